"""diffusion_lessons: the tested code behind the diffusion-lessons notebooks.

The public API, in the order the lessons meet it:

- ``NoiseSchedule`` (lesson 02) and the forward process ``markov_step``, ``q_sample``,
  ``q_posterior`` (lesson 01);
- data sets in ``data``, pictures in ``plotting``, sliders in ``widgets``;
- exercise checkers in ``exercises`` and quizzes in ``quiz``;
- the denoiser ``UNet`` (lesson 03) and its training, ``train`` with ``TrainConfig`` (lesson 04);
- the reverse process in ``sampling`` (lesson 05), the shipped models ``pretrained`` and the
  quality measures in ``metrics``;
- scores, SDEs and EDM's σ view in ``continuous``, with ``karras_sigmas`` and the sampler
  ``edm_sample`` (lesson 08);
- flow matching in ``flow``, with ``flow_matching_loss`` and ``flow_sample`` (lesson 09);
- colour emoji with captions ``emoji``, the transformer denoiser ``DiT`` with ``DiTConfig``, the
  ``TextEncoder`` and the latent ``Autoencoder`` (lesson 10);
- the course manifest in ``book``.
"""

from .continuous import karras_sigmas
from .data import emoji, load_dataset, mnist5k, sklearn_digits, toy_2d
from .dit import DiT, DiTConfig
from .flow import flow_matching_loss, flow_sample
from .latent import Autoencoder, AutoencoderConfig
from .noising import markov_chain, markov_step, q_posterior, q_sample
from .pretrained import pretrained
from .quiz import load_quiz
from .runtime import budget, default_device
from .sampling import ddpm_sample, edm_sample
from .schedules import NoiseSchedule
from .text import TextEncoder
from .training import TrainConfig, diffusion_loss, ema_decay_at, train
from .unet import MLPDenoiser, UNet, UNetConfig

__version__ = "0.1.0"

__all__ = [
    "Autoencoder",
    "AutoencoderConfig",
    "DiT",
    "DiTConfig",
    "MLPDenoiser",
    "NoiseSchedule",
    "TextEncoder",
    "TrainConfig",
    "UNet",
    "UNetConfig",
    "budget",
    "ddpm_sample",
    "default_device",
    "diffusion_loss",
    "edm_sample",
    "ema_decay_at",
    "emoji",
    "flow_matching_loss",
    "flow_sample",
    "karras_sigmas",
    "load_dataset",
    "load_quiz",
    "markov_chain",
    "markov_step",
    "mnist5k",
    "pretrained",
    "q_posterior",
    "q_sample",
    "sklearn_digits",
    "toy_2d",
    "train",
]
