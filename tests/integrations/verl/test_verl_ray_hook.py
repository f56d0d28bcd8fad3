"""verl resolves ``trainer.v1.trainer_mode`` inside the Ray actor that runs ``TaskRunnerV1``; the
recipes' ``worker_process_setup_hook`` must register the trainer there. One local Ray node, ~15 s."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # starts a local Ray node
ray = pytest.importorskip("ray", reason="verl's trainer runs in Ray actors: pip install -e '.[verl]'")
pytest.importorskip("transfer_queue", reason="verl's V1 trainer needs TransferQueue (verl's verl-core extra)")

HOOK = "mopps.integrations.verl.trainer.setup_worker"


def test_setup_hook_registers_the_trainer_in_ray_workers():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": HOOK})
    try:
        @ray.remote(num_cpus=0)
        class Probe:
            def trainer_name(self) -> str:
                from verl.trainer.ppo.v1 import get_trainer_cls

                return get_trainer_cls("mopps").__name__

        # The timeout guards against a hung actor, not a slow one (a saturated machine is slow).
        assert ray.get(Probe.remote().trainer_name.remote(), timeout=900) == "MoPPSTrainer"
    finally:
        ray.shutdown()
