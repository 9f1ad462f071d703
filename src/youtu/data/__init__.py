"""youtu.data: documents -> filters -> dedup -> token shards -> curriculum batches.

    youtu data prepare configs/tiny.toml      # sources -> runs/tiny/data/<domain>/shard_*.bin
    youtu data inspect configs/tiny.toml      # the shard tree, counts per domain/stage, samples

Modules: `sources` (readers, embedded corpus), `stem` (generated worked problems), `filters`
(quality, language id), `domain` (domain classifier), `dedup` (LSH split, decontamination),
`steps` (all of those as datatrove pipeline steps), `encode` (tokenizing into shards),
`engine` (local / Slurm executors), `prepare` (the datatrove pipeline: stages, resume,
manifest), `shards` (memory-mapped token shards + manifest), `packing` (PackedBatch, SFT
packing), `mixture` (curriculum sampler), `inspect`.
"""

from youtu.data.document import Document

__all__ = ["Document"]
