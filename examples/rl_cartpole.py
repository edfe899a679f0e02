"""A spiking policy for CartPole trained by a three-factor rule (eligibility trace x TD error).

Needs gymnasium (``pip install "snnir[rl]"``); CartPole is built in, nothing is downloaded.

Actor (spiking, learns only through ``snnir.learning.ThreeFactor``): each of the 4 observation
values is population-coded by ``M`` Gaussian receptive fields whose activations are firing
probabilities of input neurons; every environment step the network runs ``T`` time steps:
``snn.Linear(4M, 2K)`` -> an exploration noise current -> ``snn.LIF``, two populations of ``K``
neurons, one per action; the action is the population that fires more. Lateral inhibition
between the populations (``ActionSelection``) passes the chosen population's spikes to the rule
and the other's as inhibition (negative), so a synapse's eligibility ``e`` grows with its pre
trace when it drives the chosen action and shrinks when it drives the other one.

Third factor: the temporal-difference error ``delta = r + gamma V(s') - V(s)`` of a critic (a
linear value function of the same receptive fields, TD(0), not spiking), given to the learner as
its ``reward`` modulator after each environment step: ``dw = lr * delta * e`` (Fremaux, Sprekeler
& Gerstner 2013 use the same scheme with spiking critics). The modulator's gain decays as
``1 / (1 + episode / 100)``.

Actor-critic learning on CartPole is known to be unstable (a good policy can collapse a few
episodes later), so, as usual, the policy is validated every ``validate_every`` episodes on 10
greedy episodes (no noise, no learning) and the best weights are kept; training stops early when a
validation scores the maximum. The final score is the average return of that policy over 100 new
episodes of CartPole-v1 (at most 500 steps each; the classic "solved" mark is 195).

    python examples/rl_cartpole.py                  # a few minutes on 2 CPU cores
    python examples/rl_cartpole.py --episodes 200 --seed 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from snnir import nn as snn
from snnir.learning import Learner, ThreeFactor

try:
    import gymnasium as gym
except ImportError as e:  # pragma: no cover - the message is the point
    raise SystemExit("this example needs gymnasium: pip install 'snnir[rl]' (or pip install gymnasium)") from e

# observation ranges covered by the receptive fields: cart position, velocity, pole angle, angular velocity
RANGES = np.array([2.4, 3.0, 0.21, 3.0])


class PopulationCode:
    """``M`` Gaussian receptive fields per observation value, evenly spaced over +-RANGES."""

    def __init__(self, fields: int) -> None:
        self.centers = np.stack([np.linspace(-r, r, fields) for r in RANGES])
        self.width = (2 * RANGES / (fields - 1))[:, None]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        z = (np.clip(obs, -RANGES, RANGES)[:, None] - self.centers) / self.width
        return np.exp(-0.5 * z ** 2).reshape(-1)


class ExplorationNoise(snn.StepModule):
    """Adds Gaussian noise of std ``sigma`` to the input current (0: greedy)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.step_mode, self.sigma = "m", sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x) if self.sigma else x


class ActionSelection(snn.StepModule):
    """Lateral inhibition between the two action populations: the population with more spikes
    is the action (ties at random); its spikes pass, the other population's arrive negated."""

    def __init__(self, per_action: int) -> None:
        super().__init__()
        self.step_mode, self.per_action, self.action = "m", per_action, 0

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:  # [T, 1, 2K]
        counts = spikes.sum(0)[0].view(2, self.per_action).sum(1)
        self.action = int(counts[1] > counts[0]) if counts[0] != counts[1] else int(torch.randint(2, ()).item())
        sign = torch.full((2, self.per_action), -1.0)
        sign[self.action] = 1.0
        return spikes * sign.view(1, 1, -1)


class Agent:
    """The spiking actor and the linear critic."""

    def __init__(self, fields: int = 10, per_action: int = 10, steps: int = 8, sigma: float = 1.0,
                 lr: float = 3e-4, tau_e: float = 20.0, p_max: float = 0.8) -> None:
        self.code, self.steps, self.p_max = PopulationCode(fields), steps, p_max
        self.synapse = snn.Linear(4 * fields, 2 * per_action, bias=False)
        with torch.no_grad():
            self.synapse.weight.uniform_(0.0, 0.3)
        self.noise, self.select = ExplorationNoise(sigma), ActionSelection(per_action)
        self.net = snn.set_step_mode(torch.nn.Sequential(self.synapse, self.noise, snn.LIF(tau=2.0), self.select), "m")
        rule = ThreeFactor(tau_pre=2.0, tau_post=2.0, tau_e=tau_e, a_plus=1.0, a_minus=0.0, lr=lr,
                           w_min=-2.0, w_max=2.0)
        self.learner = Learner(self.synapse, rule, post=self.select)
        self.value = np.zeros(4 * fields)

    def act(self, features: np.ndarray) -> int:
        p = torch.tensor(features * self.p_max, dtype=torch.float32)
        with torch.no_grad():
            self.net((torch.rand(self.steps, 1, p.numel()) < p).float())
        return self.select.action

    def new_episode(self) -> None:
        snn.reset(self.net)
        self.learner.reset()


def run_episode(env, agent: Agent, seed: int, learn: bool = False, gain: float = 1.0, gamma: float = 0.98,
                critic_step: float = 0.1) -> float:
    obs, _ = env.reset(seed=seed)
    agent.new_episode()
    phi, total, done = agent.code(obs), 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(agent.act(phi))
        total += reward
        done = terminated or truncated
        if learn:
            phi_next = agent.code(obs)
            target = reward + (0.0 if terminated else gamma * agent.value @ phi_next)
            delta = target - agent.value @ phi
            agent.value += critic_step * delta * phi / (phi @ phi)
            agent.learner.step(reward=float(delta) * gain)  # the third factor
            phi = phi_next
        else:
            phi = agent.code(obs)
    return total


def evaluate(env, agent: Agent, seeds: range) -> list[float]:
    """Greedy episodes: no exploration noise, no learning."""
    sigma, agent.noise.sigma = agent.noise.sigma, 0.0
    agent.learner.disable()
    try:
        return [run_episode(env, agent, s) for s in seeds]
    finally:
        agent.noise.sigma = sigma
        agent.learner.enable()


def train(episodes: int = 400, validate_every: int = 20, test_episodes: int = 100, seed: int = 0,
          progress: bool = True, **agent_kwargs) -> dict[str, float]:
    torch.manual_seed(seed)
    np.random.seed(seed)
    env = gym.make("CartPole-v1")
    agent = Agent(**agent_kwargs)
    initial = agent.synapse.weight.detach().clone()
    best, returns, start = (-1.0, initial), [], time.perf_counter()
    bar = tqdm(range(episodes), desc="CartPole", unit="episode", disable=not progress)
    for episode in bar:
        returns.append(run_episode(env, agent, seed * 100_000 + episode, learn=True, gain=1.0 / (1.0 + episode / 100)))
        if (episode + 1) % validate_every == 0:
            score = float(np.mean(evaluate(env, agent, range(500_000, 500_010))))
            if score >= best[0]:
                best = (score, agent.synapse.weight.detach().clone())
            bar.set_postfix(last=np.mean(returns[-validate_every:]), validation=score, best=best[0])
            if score >= 500:
                break
    train_seconds = time.perf_counter() - start
    agent.synapse.weight.data.copy_(best[1])
    test = evaluate(env, agent, range(10**6, 10**6 + test_episodes))
    return {"test_average": float(np.mean(test)), "test_min": float(np.min(test)), "best_validation": best[0],
            "episodes": len(returns), "train_seconds": train_seconds,
            "weight_change": float((best[1] - initial).abs().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = train(args.episodes, seed=args.seed)
    print(f"trained {r['episodes']} episodes in {r['train_seconds']:.0f} s "
          f"(best validation {r['best_validation']:.1f})")
    print(f"average return over 100 test episodes: {r['test_average']:.1f} (min {r['test_min']:.0f}; "
          f"CartPole-v1 caps at 500, solved >= 195)")


if __name__ == "__main__":
    main()
