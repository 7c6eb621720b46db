"""Issue 23, from a temporary folder on a fresh THINKC_HOME (not the repository root): every shipped
recipe resolves its model, data and gist config; a stage-2 recipe whose stage-1 base is not trained
names the command to run first, in one line; --with-base trains the missing chain; a stage-2
recipe trains one step end to end. Relative paths in a recipe resolve next to it, then in the
current folder (thinkc.train.paths)."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from _cli import run_cli
from thinkc.errors import ThinkcError
from thinkc.models.loading import CHECKPOINTS, resolve_model
from thinkc.train.config import load_config, train_files
from thinkc.train.recipes import REFERENCE_RECIPES
from thinkc.train.shipped import configs_root, names

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TRAIN_RECIPES = [r for r in names("train", ".yaml") if r not in REFERENCE_RECIPES]
STAGE_2 = ["tiny_sft", "tiny_sft_2", "tiny_lightthinker", "tiny_lightthinker_2", "tiny_cts", "tiny_cts_6",
           "tiny_cts_lightthinker", "tiny_cts_lightthinker_4"]
ROW = {"question": "Sam has 4 pencils and gets 3 more. How many?", "thinking": "4 + 3 = 7.", "answer": "\\boxed{7}"}


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A current folder outside the repository, a THINKC_HOME nothing was prepared in."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.setenv("THINKC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(cwd)
    return cwd


def one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("error: "), err
    return lines[0]


def write_records(path: Path, n: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({**ROW, "id": f"r{i}"}) + "\n" for i in range(n)), encoding="utf-8")
    return path


def stub_model(path: Path) -> Path:
    """What `resolve_model` looks for (a folder with config.json): resolution only, nothing loads it."""
    path.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):  # smollm2 counts as prepared with all three
        (path / f).write_text(json.dumps({"model_type": "qwen2"}) if f == "config.json" else "")
    return path


def chain_of(recipe: str) -> list[str]:
    """The base recipes, oldest first, read from the recipe files themselves (not thinkc.train.chain)."""
    out, cfg = [], load_config(recipe, check_files=False)
    while cfg.model.init == "pretrained" and cfg.model.recipe:
        base = load_config(cfg.model.recipe, check_files=False)
        assert str(Path(base.train.output) / "final") == cfg.model.name, (recipe, cfg.model.recipe)
        out.append(cfg.model.recipe)
        cfg = base
    return out[::-1]


def provide_inputs(recipe: str, cwd: Path, home: Path) -> dict:
    """Stand-ins for what earlier commands write (run folders, data files, a prepared smollm2);
    the overrides a user's own paths need (an absolute model folder that is not on this machine)."""
    cfg, over = load_config(recipe, check_files=False), {}
    inputs = train_files(cfg.data) + ([cfg.data.eval] if cfg.data.eval not in (None, "synth") else [])
    for f in inputs:
        assert not Path(f).is_absolute() or Path(f).is_file(), f
        if not Path(f).is_absolute():
            write_records(cwd / f)
    if cfg.model.init == "pretrained":
        if cfg.model.name == "smollm2":
            with pytest.raises(ThinkcError, match="^smollm2 is not prepared yet .* run `thinkc models prepare smollm2`"):
                load_config(recipe)
            stub_model(home / "models" / "smollm2")
        elif Path(cfg.model.name).is_absolute():  # the user's own model folder (qwen7b: /models/...)
            with pytest.raises(ThinkcError, match=f"^model '{cfg.model.name}': no such local folder"):
                load_config(recipe)
            over = {"model": {"name": str(stub_model(cwd / "my-model"))}}
        else:
            stub_model(cwd / cfg.model.name)
    return over


@pytest.mark.parametrize("recipe", TRAIN_RECIPES)
def test_every_shipped_recipe_resolves_model_data_and_gist_config(fresh, recipe):
    over = provide_inputs(recipe, fresh, fresh.parent / "home")
    cfg = load_config(recipe, overrides=over)  # check_files: the model, data and gist config all resolve
    root = configs_root().resolve()
    if cfg.uses_gist and cfg.gist_config_name.endswith(".json"):  # a file shipped beside the recipe
        gist = Path(cfg.gist_config_name)
        assert gist.is_absolute() and gist.is_file() and gist.resolve().is_relative_to(root / "train"), gist
    if cfg.train.deepspeed:
        assert Path(cfg.train.deepspeed).resolve().is_relative_to(root / "deepspeed")
    for f in train_files(cfg.data):  # outputs of earlier commands: the current folder
        assert Path(f).resolve().is_relative_to(fresh), f
    if cfg.model.init == "pretrained":
        resolve_model(cfg.model.name)
    assert not Path(cfg.train.output).is_absolute()  # written in the current folder


def test_shipped_recipes_name_the_recipe_that_writes_their_model():
    linked = [r for r in TRAIN_RECIPES if load_config(r, check_files=False).model.recipe]
    assert set(STAGE_2) <= set(linked) and "tiny_base_2" in linked
    for recipe in linked:  # every link agrees with the base recipe's train.output; stage 1 starts from scratch
        chain = chain_of(recipe)
        assert chain[0] == "tiny_base" and load_config("tiny_base", check_files=False).model.init == "tiny"
    assert chain_of("tiny_sft") == ["tiny_base", "tiny_base_2", "tiny_base_3", "tiny_base_4", "tiny_base_5",
                                    "tiny_base_6"]


@pytest.mark.parametrize("recipe", STAGE_2)
def test_stage_2_recipe_without_its_base_names_the_command_to_run_first(fresh, monkeypatch, capsys, recipe):
    cfg, chain = load_config(recipe, check_files=False), chain_of(recipe)
    for r in (recipe, *chain):  # the CTS traces: give them, so that the missing base is what is left
        for f in train_files(load_config(r, check_files=False).data):
            write_records(fresh / f)
    code, _, err = run_cli(monkeypatch, capsys, "train", recipe, "--check")
    line = one_error(err)
    assert code == 2
    assert line == (f"error: model {cfg.model.name}: not trained yet (recipe {chain[-1]} writes it): run "
                    f"`thinkc train tiny_base` first, then {', '.join(chain[1:])}, from this folder; or add "
                    f"--with-base to train these {len(chain)} recipes before this run")
    code, out, err = run_cli(monkeypatch, capsys, "train", recipe, "--check", "--with-base", "--set", "data.synth.n=8")
    assert code in (0, None), err
    assert f"--with-base trains {', '.join(chain)} first (their configs check out)" in out and "\nok: " in out
    assert not list(fresh.glob("runs/*/final"))  # --check trains nothing


def test_missing_cts_traces_point_at_the_recipe_comments(fresh, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "train", "tiny_cts")
    recipe = configs_root() / "train" / "tiny_cts.yaml"
    assert one_error(err) == (f"error: data.train: runs/cts-ops/train.r0.7.jsonl: no such file (the comments at the "
                              f"top of {recipe} say how to make it; --data names another file)")
    assert "thinkc data cts -i runs/cts/train.jsonl -o runs/cts-ops/train.jsonl" in recipe.read_text()


def test_reference_recipe_by_name_from_any_folder(fresh, monkeypatch, capsys):
    from thinkc.cts.reference import ReferenceRecipe

    code, _, err = run_cli(monkeypatch, capsys, "data", "cts-reference", "tiny_cts_reference")
    assert code == 2 and one_error(err).startswith("error: model runs/tiny-base-6/final: not trained yet (recipe "
                                                   "tiny_base_6 writes it): run `thinkc train tiny_base` first")
    rec = ReferenceRecipe.load("tiny_cts_reference")
    assert rec.init == "runs/tiny-base-6/final" and rec.init_recipe == "tiny_base_6" and rec.output == "runs/tiny-cts-reference"
    with pytest.raises(ThinkcError, match="no such reference recipe"):
        ReferenceRecipe.load("tiny_cts_referense")


def test_user_recipe_paths_resolve_next_to_it_then_in_the_current_folder(fresh, tmp_path):
    recipes = tmp_path / "recipes"
    write_records(recipes / "beside.jsonl")
    write_records(fresh / "data" / "made.jsonl")  # an output of an earlier command, in the current folder
    (recipes / "layout.json").write_text(json.dumps({"mode": "aug-wo-pc", "n_cache": 3}))
    (recipes / "r.yaml").write_text(yaml.safe_dump({
        "method": "lightthinker", "model": {"name": "tiny-sft"}, "gist": {"config": "layout.json"},
        "data": {"train": ["beside.jsonl", "data/made.jsonl"]}, "train": {"output": "runs/r"}}))
    cfg = load_config(recipes / "r.yaml")
    assert cfg.data.train == [str((recipes / "beside.jsonl").resolve()), "data/made.jsonl"]
    assert cfg.gist_config_name == str((recipes / "layout.json").resolve()) and cfg.train.output == "runs/r"
    # a flag is the current folder's: --data beside.jsonl is not the recipe's file
    with pytest.raises(ThinkcError, match="^data.train: beside.jsonl: no such file$"):
        load_config(recipes / "r.yaml", overrides={"data": {"train": "beside.jsonl"}})
    (fresh / "beside.jsonl").write_text((recipes / "beside.jsonl").read_text())
    assert load_config(recipes / "r.yaml", overrides={"data": {"train": "beside.jsonl"}}).data.train == "beside.jsonl"


def _tiny_recipe(path: Path, method: str = "sft", **extra) -> Path:
    data = {"method": method, "data": {"train": "synth", "synth": {"n": 6, "max_steps": 3}, "max_length": 256},
            "train": {"max_steps": 1, "batch_size": 2, "save_steps": 100, "device": "cpu"}}
    for k, v in extra.items():
        data[k] = {**data.get(k, {}), **v}
    path.write_text(yaml.safe_dump(data))
    return path


def test_with_base_trains_the_missing_chain_oldest_first(fresh, tmp_path, monkeypatch, capsys):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    small = {"init": "tiny", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    _tiny_recipe(recipes / "base.yaml", model=small, train={"output": "runs/base"})
    _tiny_recipe(recipes / "mid.yaml", model={"name": "runs/base/final", "recipe": "base.yaml"}, train={"output": "runs/mid"})
    write_records(recipes / "top.jsonl", 4)
    (recipes / "top.gist.json").write_text(json.dumps({"mode": "aug-wo-pc", "n_cache": 2, "max_length": 256}))
    _tiny_recipe(recipes / "top.yaml", "lightthinker", model={"name": "runs/mid/final", "recipe": "mid.yaml"},
                 data={"train": "top.jsonl"}, gist={"config": "top.gist.json"}, train={"output": "runs/top"})
    base, mid = (str((recipes / f).resolve()) for f in ("base.yaml", "mid.yaml"))

    code, _, err = run_cli(monkeypatch, capsys, "train", recipes / "top.yaml")
    assert code == 2 and one_error(err) == (
        f"error: model runs/mid/final: not trained yet (recipe {mid} writes it): run `thinkc train {base}` first, "
        f"then {mid}, from this folder; or add --with-base to train these 2 recipes before this run")
    code, out, err = run_cli(monkeypatch, capsys, "train", recipes / "top.yaml", "--with-base")
    assert code in (0, None), err
    assert err.index(f"1 of 2: thinkc train {base}") < err.index(f"2 of 2: thinkc train {mid}")
    for run in ("base", "mid", "top"):
        assert (fresh / "runs" / run / "final" / "model.safetensors").is_file(), run
    assert "done: 1 steps" in out
    gist = json.loads((fresh / "runs" / "top" / "final" / "gist_config.json").read_text())
    assert gist["n_cache"] == 2  # the gist config beside the recipe
    code, out, err = run_cli(monkeypatch, capsys, "train", recipes / "top.yaml", "--with-base", "--check")
    assert code in (0, None) and "--with-base trains" not in out + err  # nothing left to train


def test_stage_2_recipe_trains_one_step_end_to_end(fresh, monkeypatch, capsys):
    """tiny_lightthinker from another folder: its gist config comes from the shipped configs, its
    base from this folder's runs/tiny-base-6/final (here the shipped tiny-sft, the same architecture
    and tokenizer as the stage-1 model it continued)."""
    shutil.copytree(CHECKPOINTS / "tiny-sft", fresh / "runs" / "tiny-base-6" / "final")
    code, out, err = run_cli(monkeypatch, capsys, "train", "tiny_lightthinker", "--max-steps", "1",
                             "--set", "data.synth.n=12", "--set", "data.limit=4", "--batch-size", "2")
    assert code in (0, None), err
    assert "done: 1 steps" in out
    final = fresh / "runs" / "tiny-lightthinker" / "final"
    assert (final / "model.safetensors").is_file()
    shipped_gist = json.loads((configs_root() / "train" / "tiny_lightthinker.gist.json").read_text())
    assert json.loads((final / "gist_config.json").read_text())["n_cache"] == shipped_gist["n_cache"] == 4
