"""MoPPS inside verl (https://github.com/verl-project/verl).

- ``config``: the ``mopps.*`` config block (keys mirror the MoPPS reference's ``tasksampler.*``).
- ``keys``: stable prompt keys ``f"{data_source}/{extra_info.index}"`` and the dataset check that
  refuses missing or repeated indices.
- ``evidence``: per-group rewards (grouped by ``uid``) -> per-prompt successes/trials.
- ``trainer``: verl >= 0.8 (tested on 0.9.1): ``MoPPSTrainer``, registered with verl's V1 trainer
  registry as ``trainer.v1.trainer_mode=mopps``.
- ``legacy_sampler``: verl 0.5 - 0.7.1: ``MoPPSCurriculumSampler`` for ``data.sampler.class_path``.

Nothing here is imported by ``import mopps``; ``trainer`` imports verl's V1 trainer (and so torch,
ray and TransferQueue) when it is itself imported.
"""
