"""The CLI where a runtime dependency cannot be imported (a Jetson venv without OpenCV, say)."""

import subprocess
import sys

BLOCK_CV2 = "import sys; sys.modules['cv2'] = None; from edge_mimo.cli.main import main; sys.exit(main(sys.argv[1:]))"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_CV2, *args], capture_output=True, text=True, timeout=120)


def test_check_runs_and_commands_that_need_opencv_say_so():
    check = cli("check")
    assert "cv2" in check.stdout and "missing" in check.stdout  # it ran, and names what is missing
    for command in ("eval", "run", "bench"):
        result = cli(command, "bundle")
        assert result.returncode == 2, (command, result.stderr)
        assert f"edge-mimo {command}: error: this command needs cv2" in result.stderr
        assert "Traceback" not in result.stderr


def test_serve_without_ray_names_the_serve_extra():
    block_ray = BLOCK_CV2.replace("'cv2'", "'ray'")
    result = subprocess.run([sys.executable, "-c", block_ray, "serve", "bundle"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "edge-mimo serve: error: this command needs ray" in result.stderr
    assert "pip install 'edge-mimo[serve]'" in result.stderr
    helped = subprocess.run([sys.executable, "-c", block_ray, "--help"], capture_output=True, text=True, timeout=120)
    assert "unavailable: needs ray" in helped.stdout
