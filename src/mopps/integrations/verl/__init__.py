"""MoPPS inside verl (https://github.com/verl-project/verl): translation between verl's rows and
rewards and one ``mopps.SelectionLoop``, which decides what is selected, learned and saved.

- ``config``: the ``mopps.*`` config block (keys mirror the MoPPS reference's ``tasksampler.*``; any
  ``mopps.Selector`` through ``selector_class``) and the loop it builds.
- ``keys``: stable prompt keys ``f"{data_source}/{extra_info.index}"`` and the dataset check that
  refuses missing or repeated indices.
- ``features``: per-prompt features from a parquet column or a feature file, for the selector.
- ``trainer``: verl >= 0.8 (tested on 0.9.1): ``MoPPSTrainer``, registered with verl's V1 trainer
  registry as ``trainer.v1.trainer_mode=mopps``.
- ``legacy_sampler``: verl 0.5 - 0.7.1: ``MoPPSCurriculumSampler`` for ``data.sampler.class_path``.

Nothing here is imported by ``import mopps``; ``trainer`` imports verl's V1 trainer (and so torch,
ray and TransferQueue) when it is itself imported.
"""
