import pytest

from syngraph.config import (
    ConfigError,
    ProjectConfig,
    default_config,
    dump_config,
    load_config,
    write_config,
)


def test_default_config_round_trips_through_toml(tmp_path):
    cfg = default_config((16.0, 16.0, 40.0))
    write_config(tmp_path, cfg)
    assert load_config(tmp_path) == cfg


def test_reference_defaults():
    cfg = default_config()
    mi, vc, sj = (cfg.organelles[k] for k in ("mi", "vc", "sj"))
    assert (mi.threshold, vc.threshold, sj.threshold) == pytest.approx((3 / 7, 2 / 7, 4 / 21))
    assert (mi.min_size_vx, vc.min_size_vx, sj.min_size_vx) == (500, 100, 100)
    assert (mi.erosions, mi.min_seed_vx) == (4, 50)
    assert (mi.assign_min_size_vx, sj.assign_min_size_vx, vc.assign_min_size_vx) == (2786, 498, 1584)
    assert (sj.ratio_min, sj.ratio_max) == (0.1, 0.9)
    assert cfg.cells.min_cc_size_nm == 5000
    assert cfg.synapses.sym_threshold == 0.225


def test_every_default_is_written_with_its_description():
    text = dump_config(default_config())
    assert "# XYZ voxel size in nm" in text
    assert "min_cc_size_nm = 5000.0" in text
    assert "[organelles.mi]" in text and "erosions = 4" in text


def test_bad_key_names_the_key_and_the_fix(tmp_path):
    write_config(tmp_path, default_config())
    path = tmp_path / "syngraph.toml"
    path.write_text(path.read_text().replace("block_size_vx = [256, 256, 128]", "block_sise_vx = 3"))
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    msg = str(e.value)
    assert "compute.block_sise_vx" in msg and "syngraph config init" in msg and str(path) in msg


def test_bad_value_names_the_value(tmp_path):
    write_config(tmp_path, default_config())
    path = tmp_path / "syngraph.toml"
    path.write_text(path.read_text().replace("voxel_size_nm = [10.0, 10.0, 25.0]", "voxel_size_nm = [10.0, -1.0, 25.0]"))
    with pytest.raises(ConfigError, match=r"voxel_size_nm.*positive"):
        load_config(tmp_path)


def test_missing_config_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError, match="syngraph config init"):
        load_config(tmp_path)


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(Exception, match="voxel_sizes"):
        ProjectConfig.model_validate({"voxel_size_nm": [1, 1, 1], "voxel_sizes": 3})


def test_docs_config_md_is_generated_from_the_defaults():
    from pathlib import Path

    from syngraph.config import config_markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text() == config_markdown(), "regenerate: syngraph config docs > docs/config.md"


@pytest.mark.parametrize(
    ("voxel_nm", "downsample"),
    [((4.0, 4.0, 40.0), (8, 8, 1)), ((6.0, 6.0, 30.0), (4, 4, 1)), ((8.0, 8.0, 40.0), (4, 4, 1)),
     ((10.0, 10.0, 25.0), (2, 2, 1)), ((16.0, 16.0, 40.0), (2, 2, 1))],
)
def test_default_skeleton_downsample_divides_the_block(voxel_nm, downsample):
    from syngraph.checks import parameter_problems

    cfg = default_config(voxel_nm)
    assert cfg.skeletons.downsample_for(cfg.voxel_size_nm) == downsample
    assert parameter_problems(cfg) == []
