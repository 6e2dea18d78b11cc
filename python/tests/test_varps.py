"""The Python package on the tiny model and the tiny golden checkpoints: the
API, its errors, interruption, and bit-equality with the varps command; and
the built-in trained model as the default."""
import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

import varps

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "data" / "golden" / "tiny"
CLI = Path(os.environ.get("VARPS_CLI", ROOT / "build" / "varps"))


@pytest.fixture(scope="module")
def tiny():
    return varps.Pipeline(preset="tiny", threads=2)


def run_cli(*args, cwd):
    if not CLI.exists():
        pytest.skip(f"the varps program is not built at {CLI} (set VARPS_CLI)")
    r = subprocess.run([str(CLI), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert r.returncode == 0, r.stderr
    return r


def test_generate_returns_uint8_nhwc_and_depends_on_class_and_seed_only(tiny):
    a = tiny.generate(classes=[1, 2], seeds=[5, 6])
    assert a.dtype == np.uint8 and a.shape == (2, 8, 8, 3)
    b = tiny.generate(classes=[2], seeds=[6])  # the second image alone
    assert np.array_equal(a[1], b[0])
    c = tiny.generate(classes=[2], seeds=[7])
    assert not np.array_equal(b, c)
    # an int seed is the first one
    assert np.array_equal(tiny.generate(classes=[1, 2], seeds=5), a)


def test_without_checkpoints_the_builtin_trained_model_runs():
    p = varps.Pipeline(threads=2)
    assert p.image_size == 32 and p.num_classes == 10 and p.var_config["depth"] == 8
    assert p.weights == varps.Pipeline(*varps.builtin_model_files("fmnist"), threads=2).weights
    assert varps.Pipeline(*varps.builtin_model_files("fmnist-d4"), threads=2).var_config["depth"] == 4
    with pytest.raises(ValueError, match="fmnist-d4"):
        varps.builtin_model_files("imagenet")


def test_tokens_streams_and_per_stream_params(tiny):
    imgs, tokens = tiny.generate(classes=[3], streams=3, seeds=10, return_tokens=True)
    assert imgs.shape[0] == 3 and len(tokens) == 3
    assert [len(t) for t in tokens[0]] == [1, 4, 9, 16]
    assert all(0 <= v < 64 for maps in tokens for m in maps for v in m)
    same = tiny.generate(classes=[3, 3, 3], seeds=[10, 11, 12])
    assert np.array_equal(imgs, same)
    mixed = tiny.generate(classes=[3], params=[{"seed": 10}, {"seed": 11, "cfg": 0}, {"class": "uncond", "top_k": 1}])
    assert np.array_equal(mixed[0], imgs[0])
    assert np.array_equal(mixed[1], tiny.generate(classes=[3], seeds=[11], cfg=0)[0])
    assert np.array_equal(mixed[2], tiny.generate(classes=["uncond"], seeds=[2], top_k=1)[0])


def test_outputs_are_bit_identical_to_the_cli(tiny, tmp_path):
    run_cli("generate", "--preset", "tiny", "--class", "2,uncond", "--seed", "40", "--cfg", "1.5", "--top-k", "20", "--top-p", "0.8",
            "--out", "o", "--tokens-out", "t.json", "--quiet", cwd=tmp_path)
    doc = json.loads((tmp_path / "t.json").read_text())
    imgs, tokens = tiny.generate(classes=[2, "uncond"], seeds=40, cfg=1.5, top_k=20, top_p=0.8, return_tokens=True)
    assert tokens == [img["tokens"] for img in doc["images"]]
    # pixels: the sample command writes them into an npz
    run_cli("sample", "--preset", "tiny", "--class", "2,uncond", "--per-class", "1", "--seed", "40", "--cfg", "1.5", "--top-k", "20",
            "--top-p", "0.8", "--out", "s", "--quiet", cwd=tmp_path)
    arr = np.load(tmp_path / "s" / "samples.npz")["arr_0"]
    assert arr.dtype == np.uint8 and np.array_equal(arr, imgs)


def test_checkpoints_reconstruct_tokenize_and_edit():
    p = varps.Pipeline(var=TINY / "var.safetensors", vae=TINY / "vae.pth", threads=2)
    assert p.var_config["depth"] == 2 and p.num_classes == 10 and p.image_size == 8
    img = p.generate(classes=[4], seeds=1)[0]
    rec = p.reconstruct(img)
    assert rec.shape == img.shape and rec.dtype == np.uint8
    tokens = p.tokenize(img)[0]
    assert [len(t) for t in tokens] == [1, 4, 9, 16]
    edited, out_tokens = p.edit(image=img, box=(0.25, 0.25, 0.75, 0.75), classes=[3, "uncond"], seeds=7,
                                return_tokens=True)
    assert edited.shape == (2, 8, 8, 3)
    keep = varps.box_mask((0.25, 0.25, 0.75, 0.75), 4)
    for maps in out_tokens:
        last = np.array(maps[-1]).reshape(4, 4)
        assert np.array_equal(last[keep == 1], np.array(tokens[-1]).reshape(4, 4)[keep == 1])
    white = np.zeros((8, 8, 3), np.uint8)
    white[2:6, 2:6] = 255
    by_mask = p.edit(tokens=tokens, mask=white, classes=3, seeds=7)
    assert np.array_equal(by_mask[0], edited[0])


def test_inspect_adapter_and_memory_plan(tiny, tmp_path):
    info = varps.inspect(TINY / "var.pth")
    assert info["format"] == "pytorch-zip" and info["kind"] == "var"
    assert info["config"]["num_classes"] == 10
    names = {t["name"]: t for t in info["tensors"]}
    assert names["class_emb.weight"]["dtype"] == "F32" and names["class_emb.weight"]["shape"] == [11, 128]
    one = tiny.plan_memory(classes=[1])
    four = tiny.plan_memory(classes=[1], streams=4)
    assert four["rows"] == 4 * one["rows"] and four["kv_cache"] == 4 * one["kv_cache"]
    run_cli("adapter", "init", "--preset", "tiny", "--streams", "2", "--prefix-tokens", "2", "--out", "a.safetensors",
            cwd=tmp_path)
    p = varps.Pipeline(preset="tiny", threads=2)
    plain = p.generate(classes=[1], seeds=3)
    p.attach_adapter(tmp_path / "a.safetensors")
    assert p.adapter_streams == 2
    assert not np.array_equal(p.generate(classes=[1], seeds=3), plain)
    p.detach_adapter()
    assert np.array_equal(p.generate(classes=[1], seeds=3), plain)


def test_errors_are_python_exceptions_with_the_engines_message(tiny, tmp_path):
    with pytest.raises(ValueError, match="class 11 is out of range"):
        tiny.generate(classes=[11])
    with pytest.raises(ValueError, match="top_p"):
        tiny.generate(classes=[1], top_p=1.5)
    with pytest.raises(ValueError, match="cfg"):
        tiny.generate(classes=[1], cfg=-1)
    with pytest.raises(ValueError, match="seed"):
        tiny.generate(classes=[1], seeds=[-1])
    with pytest.raises(ValueError, match="unknown keys"):
        tiny.generate(classes=[1], params=[{"cgf": 2}])
    with pytest.raises(ValueError, match="edit box"):
        tiny.edit(tokens=[[0], [0] * 4, [0] * 9, [0] * 16], box=(0.5, 0, 0.5, 1))
    with pytest.raises(ValueError, match="token"):
        tiny.edit(tokens=[[0], [0] * 4, [0] * 9, [99] * 16], box=(0, 0, 0.5, 1))
    with pytest.raises(ValueError, match="8x8"):
        tiny.edit(image=np.zeros((16, 16, 3), np.uint8), box=(0, 0, 0.5, 1))
    with pytest.raises(ValueError, match="uint8"):
        tiny.tokenize(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="unknown preset"):
        varps.Pipeline(preset="d17")
    with pytest.raises(ValueError, match="device"):
        varps.Pipeline(device="tpu")
    with pytest.raises(FileNotFoundError):
        varps.Pipeline(var=tmp_path / "nope.pth", vae=TINY / "vae.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(OSError, match="bad.pth"):
        varps.Pipeline(var=bad, vae=TINY / "vae.pth")
    with pytest.raises(OSError, match="bad.pth"):
        varps.inspect(bad)


def test_ctrl_c_stops_at_the_next_scale_and_the_pipeline_goes_on(tiny):
    seen = []

    def interrupt(done, total):
        seen.append(done)
        if done == 1:
            # raise(): handled in this thread before it returns
            signal.raise_signal(signal.SIGINT)

    # Python's Ctrl-C handler, also where the test runs in a background job
    # (whose SIGINT the shell ignores, so Python installs none)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            tiny.generate(classes=[1], progress=interrupt)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [1]
    # an exception from the callback stops it the same way
    with pytest.raises(ZeroDivisionError):
        tiny.generate(classes=[1], progress=lambda done, total: 1 / 0)
    assert tiny.generate(classes=[1], seeds=0).shape == (1, 8, 8, 3)


def test_arrays_in_any_form_with_the_array_protocol(tiny):
    img = tiny.generate(classes=[1], seeds=2)[0]
    assert tiny.tokenize(memoryview(img)) == tiny.tokenize(img[None])
    assert tiny.tokenize(np.asfortranarray(img)) == tiny.tokenize(img)


def test_fast_modes_match_the_cli_and_switch_off(tmp_path):
    p = varps.Pipeline(threads=2)  # the trained model; its refiner is fmnist-d4
    exact = p.generate(classes=[7, 2], seeds=3, cfg=1.5)
    p.set_fast_modes(cfg_until_scale=3, prune=0.5, refiner="fmnist-d4", refine_from_scale=3)
    fast, tokens = p.generate(classes=[7, 2], seeds=3, cfg=1.5, return_tokens=True)
    assert not np.array_equal(fast, exact)
    run_cli("generate", "--class", "7,2", "--seed", 3, "--cfg", 1.5, "--cfg-until-scale", 3, "--prune", 0.5,
            "--refiner", "fmnist-d4", "--refine-from-scale", 3, "--out", "o", "--tokens-out", "t.json", "-q",
            cwd=tmp_path)
    assert json.loads((tmp_path / "t.json").read_text())["images"][0]["tokens"] == tokens[0]
    p.set_fast_modes()  # all off: the exact path again
    assert np.array_equal(p.generate(classes=[7, 2], seeds=3, cfg=1.5), exact)
    with pytest.raises(ValueError, match="cfg-until-scale 9 is out of range"):
        p.set_fast_modes(cfg_until_scale=9)
    with pytest.raises(ValueError, match="needs a refiner"):
        p.set_fast_modes(refine_from_scale=3)
