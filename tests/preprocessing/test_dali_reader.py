"""DALI's `fn.readers.webdataset` reads the shards through the written `.idx` files, on CPU."""

from __future__ import annotations

import json

import pytest

from preprocessing.run import preprocess
from tests.preprocessing.conftest import FRAMES, config_for


@pytest.mark.dali
@pytest.mark.parametrize("codec", ["h264", "vp9", "mjpeg"])
def test_dali_reads_the_shards_with_their_indices_on_cpu(broken_dataset, tmp_path, codec):
    from nvidia.dali import fn, pipeline_def, types

    summary = preprocess(config_for(broken_dataset, tmp_path, codec=codec))
    tars = [str(tmp_path / s) for s in summary["shards"]]
    idxs = [t.replace(".tar", ".idx") for t in tars]
    decode = codec != "h264"  # DALI's CPU video decoder takes VP9 / MJPEG; H.264 is GPU-only

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        video, label, nframes, meta = fn.readers.webdataset(
            paths=tars, index_paths=idxs, ext=["mp4", "label", "nframes", "json"],
            dtypes=[types.UINT8, types.INT32, types.INT32, types.UINT8],
            missing_component_behavior="error")
        if decode:
            video = fn.decoders.video(video, device="cpu")
        return video, label, nframes, meta

    p = pipe()
    p.build()
    seen = []
    for _ in range(summary["num_ok"]):
        video, label, nframes, meta = (o.as_array()[0] for o in p.run())
        meta = json.loads(bytes(meta).decode("utf-8"))
        assert int(label[0]) == meta["label"] and int(nframes[0]) == meta["nframes"] == FRAMES
        if decode:
            assert video.shape == (FRAMES, meta["height"], meta["width"], 3)
        seen.append(meta["source_id"])
    assert len(set(seen)) == summary["num_ok"]
