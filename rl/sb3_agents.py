"""TD3 from Stable-Baselines3 on cimc's bit-width environment (``--method td3``).

The agent plugs into :class:`cimc.rl.gym_env.BitWidthGymEnv` through the gymnasium API and is
trained by SB3's own ``learn()``; every episode is scored and recorded by cimc's search (same
constraints, cost, accuracy cache, reward, ``episodes.jsonl``, best policy and plots as DDPG).

Settings: SB3's TD3 defaults except where the comparison with cimc's DDPG must be equal --
the same number of episodes (``total_timesteps = episodes * 2L``), the same warm-up of uniform
random actions (``learning_starts = warmup * 2L``), the same hidden layers (300, 300), one update
per stored transition after each episode (``train_freq = (1, "episode")``, ``gradient_steps =
-1``), a discount of 1 (the environment pays the episode's reward at its last step only, so
every step's return is that reward, as CIM-AQ gives it to every transition), and the same exploration
schedule (a normal noise whose width follows the DDPG config's ``sigma(episode)``, doubled
because SB3 adds it in its [-1, 1] action scale). ``--resume`` is not supported (SB3's replay
buffer and optimiser are not part of cimc's checkpoint).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cimc.errors import CimcError


def _noise_class():
    from stable_baselines3.common.noise import ActionNoise

    class ScheduledNoise(ActionNoise):
        """Normal noise of width ``2 * sigma(episode)`` (SB3's scaled action space)."""

        def __init__(self, sigma_fn, env, seed: int):
            super().__init__()
            self.sigma_fn = sigma_fn
            self.env = env
            self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7D3]))

        def __call__(self) -> np.ndarray:
            return self.rng.normal(0.0, 2.0 * self.sigma_fn(max(self.env.episode, 0)), size=(1,))

        def reset(self) -> None:
            pass

    return ScheduledNoise


def run_td3(search: Any, resume: bool, progress: bool) -> Any:
    """Run ``search`` (a ``cimc.rl.search._Search`` with ``method == "td3"``) with SB3's TD3."""
    import torch
    from stable_baselines3 import TD3
    from tqdm import tqdm

    from cimc.rl.gym_env import BitWidthGymEnv
    from cimc.rl.plots import plot_search

    if resume and search.ckpt_path.exists():
        raise CimcError(f"{search.out_dir}: --resume is not supported with --method td3 "
                        "(Stable-Baselines3's state is not in cimc's checkpoint)")
    search.open(False)
    cfg = search.config
    bar = tqdm(total=cfg.episodes, disable=not progress, desc="search[td3]", unit="ep",
               dynamic_ncols=True)
    last = [time.perf_counter()]

    def score(ep: int, raw: np.ndarray, actions: list[float]) -> dict[str, Any]:
        t_agent = time.perf_counter() - last[0]
        rec = search.score_single(ep, raw, actions, t_agent)
        search.commit([rec], None)
        bar.update(1)
        search.show(bar)
        last[0] = time.perf_counter()
        return rec

    env = BitWidthGymEnv(search.spec.layers, cfg, score)
    steps = env.n_steps
    noise = _noise_class()(search.agent.sigma, env, cfg.seed)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = TD3("MlpPolicy", env, learning_starts=cfg.warmup * steps, batch_size=cfg.ddpg.batch_size,
                    gamma=1.0, train_freq=(1, "episode"), gradient_steps=-1,
                    action_noise=noise, policy_kwargs={"net_arch": [cfg.ddpg.hidden] * 2},
                    seed=cfg.seed, device="cpu", verbose=0)
        model.learn(total_timesteps=cfg.episodes * steps)
    finally:
        torch.set_num_threads(before)
        bar.close()
    if len(search.history) != cfg.episodes:
        raise CimcError(f"td3: {len(search.history)} episodes recorded, {cfg.episodes} asked")
    plot_search(search.history, search.best, search.spec.names, search.out_dir / "search.png")
    return search.result()
