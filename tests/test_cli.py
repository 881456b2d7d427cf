import subprocess
import sys


def syngraph(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "syngraph", *args], capture_output=True, text=True, cwd=cwd)


def test_config_init_writes_a_valid_config(tmp_path):
    r = syngraph("config", "init", "--wd", str(tmp_path), "--voxel-size-nm", "16", "16", "40")
    assert r.returncode == 0, r.stderr
    assert "voxel_size_nm = [16.0, 16.0, 40.0]" in (tmp_path / "syngraph.toml").read_text()
    r = syngraph("config", "init", "--wd", str(tmp_path))
    assert r.returncode == 2 and "--force" in r.stderr
    r = syngraph("config", "check", "--wd", str(tmp_path))  # checks the layers it names, too
    assert r.returncode == 2 and "layer 'sv'" in r.stderr and "syngraph import sv" in r.stderr
    assert "config is valid" not in r.stderr


def test_user_errors_are_one_clear_line(tmp_path):
    r = syngraph("run", "all", "--wd", str(tmp_path))
    assert r.returncode == 2
    assert "error:" in r.stderr and "syngraph config init" in r.stderr
    assert "Traceback" not in r.stderr


def test_step_input_errors_are_one_clear_line(tmp_path):
    """`config init` lists only what is imported (labels only is a valid project); a config that
    names a layer nobody imported fails `config check` and `run` up front, in one line that
    names the layer and the fix."""
    import numpy as np

    np.save(tmp_path / "seg.npy", np.arange(8 * 8 * 4, dtype=np.uint64).reshape(4, 8, 8) + 1)
    syngraph("config", "init", "--wd", str(tmp_path), "--voxel-size-nm", "16", "16", "40")
    assert "[layers.mi]" not in (tmp_path / "syngraph.toml").read_text()
    r = syngraph("import", "sv", str(tmp_path / "seg.npy"), "--wd", str(tmp_path), "--scheduler", "serial",
                 "--axes", "zyx")
    assert r.returncode == 0, r.stderr
    r = syngraph("config", "check", "--wd", str(tmp_path))
    assert r.returncode == 0 and "config is valid" in r.stderr
    assert "'sj' not imported; it would add: synapses between cells" in r.stderr
    with (tmp_path / "syngraph.toml").open("a") as f:
        f.write('\n[layers.mi]\npath = "mi"\nkind = "probability"\n')
    for cmd in (("config", "check"), ("run", "init", "--scheduler", "serial")):
        r = syngraph(*cmd, "--wd", str(tmp_path))
        assert r.returncode == 2, r.stderr
        assert "layer 'mi' is named in [layers]" in r.stderr and "syngraph import mi" in r.stderr
        assert "remove it from [layers]" in r.stderr and "config is valid" not in r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "steps" / "init").exists()  # nothing ran


def test_unknown_step(tmp_path):
    syngraph("config", "init", "--wd", str(tmp_path))
    r = syngraph("run", "nosuchstep", "--wd", str(tmp_path))
    assert r.returncode == 2 and "unknown step 'nosuchstep'" in r.stderr


def test_import_from_the_command_line(tmp_path):
    import numpy as np

    from syngraph.io.volume import open_layer

    a = (np.arange(20 * 10 * 6, dtype=np.uint64).reshape(6, 10, 20) + 2**33)  # ZYX on disk
    np.save(tmp_path / "seg.npy", a)
    r = syngraph("import", "sv", str(tmp_path / "seg.npy"), "--wd", str(tmp_path),
                 "--voxel-size-nm", "16", "16", "40", "--scheduler", "serial")
    assert r.returncode == 2 and "seg.npy (shape [6, 10, 20]) does not say its axis order" in r.stderr
    assert "--axes xyz" in r.stderr and "Traceback" not in r.stderr
    r = syngraph("import", "sv", str(tmp_path / "seg.npy"), "--wd", str(tmp_path),
                 "--voxel-size-nm", "16", "16", "40", "--scheduler", "serial", "--axes", "zyx")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(open_layer(tmp_path, "sv").read(), a.transpose(2, 1, 0))
    r = syngraph("import", "mi", str(tmp_path / "nope.h5"), "--wd", str(tmp_path), "--kind", "probability")
    assert r.returncode == 2 and "nope.h5" in r.stderr and "Traceback" not in r.stderr
