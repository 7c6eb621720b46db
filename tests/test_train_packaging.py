"""A wheel (not an editable install) ships the recipes and the DeepSpeed / accelerate / gist presets
as package data (thinkc/configs), and an installed copy resolves them by name: `thinkc train
tiny_base --max-steps 2` runs from outside the source tree."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """`pip wheel` of a copy of the source tree (the build writes build/ and *.egg-info beside the
    sources; the copy keeps the working tree clean). No C++ extension: pure-torch fallbacks."""
    src = tmp_path_factory.mktemp("src")
    for name in ("thinkc", "cli", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "THINKC_NO_EXT": "1", "PIP_NO_INDEX": "1"}
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(dist), str(src)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    (whl,) = dist.glob("thinkc-*.whl")
    return whl


def test_wheel_ships_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind, suffix in (("train", ".yaml"), ("train", ".json"), ("deepspeed", ".json"), ("gist", ".json"),
                         ("accelerate", ".yaml")):
        shipped = sorted(p.name for p in (ROOT / "configs" / kind).glob(f"*{suffix}"))
        assert shipped, kind
        missing = [n for n in shipped if f"thinkc/configs/{kind}/{n}" not in names]
        assert not missing, (kind, missing)
    assert "thinkc/cli/train.py" in names and "thinkc/train/shipped.py" in names


@pytest.mark.slow
def test_installed_wheel_trains_a_recipe_by_name(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what `pip install thinkc.whl` puts in site-packages
    run_dir = tmp_path / "elsewhere"  # not the source tree: nothing can come from ./configs
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    probe = ("import thinkc.train.shipped as s, thinkc.train.config as c; from thinkc.gist.config import GistConfig; "
             "cfg = c.load_config('tiny_sft', sets=['train.deepspeed=zero3'], check_files=False); "
             "print(s.configs_root()); print(cfg.train.deepspeed); print(GistConfig.load('qwen').n_cache); "
             "lt = c.load_config('tiny_lightthinker', check_files=False).gist_config_name; "
             "print(lt); print(GistConfig.load(lt).n_cache)")
    p = subprocess.run([sys.executable, "-c", probe], cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    root, ds, n_cache, lt_gist, lt_n_cache = p.stdout.split()
    assert Path(root) == site / "thinkc" / "configs" and Path(ds) == site / "thinkc/configs/deepspeed/zero3.json"
    assert n_cache == "9"
    # a recipe's own gist config resolves next to the recipe, inside the install
    assert Path(lt_gist) == site / "thinkc/configs/train/tiny_lightthinker.gist.json" and lt_n_cache == "4"
    # tiny_base trains from scratch (tiny_sft & co. continue from its run folder)
    p = subprocess.run([sys.executable, "-m", "thinkc.cli.main", "train", "tiny_base", "--max-steps", "2",
                        "-o", str(run_dir / "run"), "--set", "data.synth.n=16", "--set", "train.max_minutes=0"],
                       cwd=run_dir, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "done: 2 steps" in p.stdout and (run_dir / "run" / "final" / "model.safetensors").is_file()
