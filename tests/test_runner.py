"""Running a configuration (pmp.batch.runner): the progress lines."""


def test_progress_lines_give_the_rate_since_the_last_line():
    """The first iterations of a process include the kernels' compilation: each plain progress
    line gives the rate since the line before, so later lines show the steady speed."""
    import io
    from types import SimpleNamespace

    from pmp.batch.runner import Progress

    out = io.StringIO()
    progress = Progress(100, stream=out, every=50)
    for iteration, elapsed in ((0, 0.0), (50, 10.0), (100, 10.5)):
        progress.update(SimpleNamespace(
            iteration=iteration, elapsed=elapsed, status="", grad_norm=1.0, step_size=0.1,
            extra={}, cost={"total": 1.0, "loss": 1.0}))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "it/s" not in lines[0]
    assert lines[1].endswith("(5.0 it/s)") and lines[2].endswith("(100.0 it/s)")
