"""Loaded next to ``actors.app`` by the training tests' workers: one torch thread, and an
optional pause after each epoch (``PFD_TEST_EPOCH_DELAY_S``) so a test can act mid-training.
"""

from __future__ import annotations

import os
import time

import torch

from pipeline.training import loop

torch.set_num_threads(1)
EPOCH_DELAY_S = float(os.environ.get("PFD_TEST_EPOCH_DELAY_S", "0"))

if EPOCH_DELAY_S > 0:
    _train_epoch = loop._train_epoch

    def _slow_train_epoch(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The pause falls after the epoch's training and before last.pt is written, so a
        # kill during it loses that epoch, as a real crash mid-epoch would.
        result = _train_epoch(*args, **kwargs)
        time.sleep(EPOCH_DELAY_S)
        return result

    loop._train_epoch = _slow_train_epoch
