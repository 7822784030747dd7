import threading

from metaprompt.backbones import embedded


def test_conversion_runs_once_and_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("METAPROMPT_CACHE", str(tmp_path))
    calls = []

    def write(folder):
        calls.append(folder)
        (folder / "weights.bin").write_text("w")

    threads = [threading.Thread(target=embedded._convert_once, args=("m", write)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    final = tmp_path / "m"
    assert (final / "weights.bin").read_text() == "w" and (final / embedded.COMPLETE_MARKER).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m-")]  # no temp folders left


def test_half_written_cache_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setenv("METAPROMPT_CACHE", str(tmp_path))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "partial.bin").write_text("killed mid-write")  # no completion marker

    def write(folder):
        (folder / "weights.bin").write_text("good")

    out = embedded._convert_once("m", write)
    assert (out / "weights.bin").read_text() == "good" and not (out / "partial.bin").exists()


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("METAPROMPT_CACHE", str(tmp_path))

    def write(folder):
        raise RuntimeError("disk full")

    try:
        embedded._convert_once("m", write)
    except RuntimeError:
        pass
    assert not (tmp_path / "m").exists() and not [p for p in tmp_path.iterdir() if p.is_dir()]
