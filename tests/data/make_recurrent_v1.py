"""Writes tests/data/recurrent_v1.snnir with snnir at main 83e269c (format version 1)."""
import numpy as np
import snnir

rng = np.random.default_rng(7)
g = snnir.Graph("recurrent_v1")
x = g.add_input((5,), id="x")
fc = g.add_node("linear", [x], params={"weight": rng.normal(0.6, 0.8, (4, 5)).astype(np.float32)}, id="fc")
s = g.add_node("add", [fc], id="rnn_in")
lif = g.add_node("neuron", [s], attrs={"model": "LIF", "tau": 2.0}, id="lif")
rec = g.add_node("linear", [lif], params={"weight": rng.normal(0, 0.5, (4, 4)).astype(np.float32)}, id="rec")
g.add_edge(rec, s, port=1)
# a second loop through a delay: syn = add(lif, d); d = delay(syn) feeds back
syn = g.add_node("add", [lif], id="syn")
d = g.add_node("delay", [syn], attrs={"steps": 2}, id="d")
g.add_edge(d, syn, port=1)
g.add_output(syn, id="y")
g = snnir.optimize(g)
print(g.recurrent_edges())
snnir.save(g, "tests/data/recurrent_v1.snnir")
print(snnir.inspect(snnir.load("tests/data/recurrent_v1.snnir")))
