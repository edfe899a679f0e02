"""Energy per operation, with its source: what turns operation counts into picojoules.

The defaults are M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC
2014, doi:10.1109/ISSCC.2014.6757323 (45 nm CMOS, 0.9 V), the constants the SNN literature uses:

    32-bit float add 0.9 pJ, 32-bit float multiply 3.7 pJ -> MAC 4.6 pJ, AC 0.9 pJ
    8-bit int add 0.03 pJ, 8-bit int multiply 0.2 pJ      -> MAC 0.23 pJ, AC 0.03 pJ
    64-bit read from a 32 KB SRAM: 20 pJ                  -> 2.5 pJ per byte

They describe arithmetic and on-chip SRAM reads, not a particular chip: an estimate, useful to
compare networks and encodings, not a measurement. Override any field:
``EnergyModel(memory_pj_per_byte=0.0)`` leaves memory out, ``EnergyModel.int8_45nm()`` prices
8-bit integer arithmetic.

Example:
    >>> e = EnergyModel()
    >>> e.mac_pj, e.ac_pj
    (4.6, 0.9)
    >>> EnergyModel(ac_pj=0.5).ac_pj
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass

HOROWITZ_2014 = ("M. Horowitz, Computing's energy problem (and what we can do about it), ISSCC 2014, "
                 "doi:10.1109/ISSCC.2014.6757323 (45 nm, 0.9 V)")


@dataclass(frozen=True)
class EnergyModel:
    """Energy of one operation in picojoules (see the module docstring for the sources).

    Attributes:
        mac_pj: one multiply-accumulate (a synapse with a real-valued input).
        ac_pj: one accumulate (a synapse with a spike input, an add, a pooling read, a comparison).
        add_pj: one addition, subtraction or comparison in a neuron's state update.
        mul_pj: one multiplication or division in a neuron's state update.
        other_pj: one other function in a neuron's update (exp, sigmoid, ...); priced as a MAC.
        memory_pj_per_byte: one byte of weights or state read or written.
        source: where the numbers come from (printed with the estimate).
    """

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    add_pj: float = 0.9
    mul_pj: float = 3.7
    other_pj: float = 4.6
    memory_pj_per_byte: float = 2.5
    source: str = f"32-bit float, {HOROWITZ_2014}"

    @classmethod
    def fp32_45nm(cls) -> EnergyModel:
        """32-bit float arithmetic at 45 nm (the default)."""
        return cls()

    @classmethod
    def int8_45nm(cls) -> EnergyModel:
        """8-bit integer arithmetic at 45 nm (quantized weights and activations)."""
        return cls(mac_pj=0.23, ac_pj=0.03, add_pj=0.03, mul_pj=0.2, other_pj=0.23,
                   source=f"8-bit integer, {HOROWITZ_2014}")
