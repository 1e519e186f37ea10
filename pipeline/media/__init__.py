"""Video files and shard files: the one MP4 encoder and the one shard writer, shared by
`preprocessing` (demo data, transcoding, sharding) and the test fixtures (`pipeline.data.synthetic`).
Imports no torch and no other layer of the project."""
