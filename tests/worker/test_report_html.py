"""report.html as a browser shows it: headless Chromium (Debian's package) loads the page, and the
rendered DOM must hold the comparison table, every plot image loaded, and the generations escaped.
And the same report built from an S3 prefix (MinIO) through `quanteval report`.

The screenshot is kept under the test's tmp folder and copied to `.test-artifacts/report.png`.
"""

import json
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from quanteval.precisions import Precision
from quanteval.report import build_report
from quanteval.report.serialize import from_json
from quanteval_cli.main import main
from tests.builders import Samples, make_result, write_run

if TYPE_CHECKING:
    from devcluster.minio import MinioServer

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / ".test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
PLOT_IDS = ["plot-f1-memory", "plot-emotion-f1", "plot-memory", "plot-time"]
RUN_IDS = ["big-fp32", "big-nf4", "small-fp32", "small-bf16"]
HOSTILE = "<marquee>loud</marquee> & <b>bold</b>"  # generated text that must stay text

# Appended to a copy of the page: after the load event, the title reports what the browser did.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.title = JSON.stringify({
    images: images.map(i => ({id: i.id, complete: i.complete,
                              width: i.naturalWidth, height: i.naturalHeight})),
    rows: document.querySelectorAll("#comparison-table tbody tr").length,
    marquees: document.querySelectorAll("marquee").length,
  });
});
</script>"""


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, which scripts/setup-venv.sh installs (never a downloaded browser)."""
    if not CHROMIUM.exists():
        pytest.skip(f"headless Chromium ({CHROMIUM}) is missing: scripts/setup-venv.sh installs it")
    return CHROMIUM


def run_chromium(binary: Path, profile: Path, *args: str) -> str:
    command = [str(binary), *FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (
        f"{' '.join(command)}: exit {done.returncode}\n{done.stderr[-3000:]}"
    )
    return done.stdout


class Elements(HTMLParser):
    """The elements of a DOM dump (tag and attributes, in order) and its text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def by_id(self, element_id: str) -> tuple[str, dict[str, str]]:
        matches = [e for e in self.elements if e[1].get("id") == element_id]
        assert len(matches) == 1, f"{len(matches)} elements with id {element_id}"
        return matches[0]


@pytest.fixture
def evaluation(tmp_path: Path) -> Path:
    """Two models at two precisions each, with generations."""
    root = tmp_path / "eval"
    texts: Samples = {
        (1, "anger", 0): ("I am furious about the broken promise.", 0.8),
        (1, "joy", 0): ("What a wonderful sunny morning!", 0.9),
        (2, "anger", 0): (HOSTILE, 0.4),
        (2, "joy", 0): ("We laughed all the way home.", 0.7),
    }
    runs = [
        ("big", Precision.FP32, 0.80, 4 * 2**30, 5 * 2**30, 20.0),
        ("big", Precision.NF4, 0.70, 2**30, 1.5 * 2**30, 30.0),
        ("small", Precision.FP32, 0.60, 2**30, 1.4 * 2**30, 10.0),
        ("small", Precision.BF16, 0.55, 2**29, 2**30, 6.0),
    ]
    for model, precision, f1, weights, peak, seconds in runs:
        result = make_result(
            model, precision, f1=f1, weights=int(weights), peak=int(peak), seconds=seconds,
            per_emotion_f1=(f1 - 0.2, f1 + 0.1),
        )  # fmt: skip
        write_run(root, f"{model}-{precision.value}", result, texts)
    return root


def test_report_html_renders_in_chromium(chromium: Path, evaluation: Path, tmp_path: Path) -> None:
    built = build_report(str(evaluation))
    page = evaluation / "report.html"
    assert built.files.html == str(page)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "\n</body>"))

    dom = run_chromium(
        chromium,
        tmp_path / "profile",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    )
    screenshot = tmp_path / "report.png"
    run_chromium(
        chromium,
        tmp_path / "profile",
        f"--screenshot={screenshot}",
        "--window-size=1400,3000",
        page.as_uri(),
    )
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(screenshot, ARTIFACTS / "report.png")

    parsed = Elements(dom)
    assert "<title>" in dom, "no <title> in the rendered DOM"
    state = json.loads(unescape(dom.split("<title>", 1)[1].split("</title>", 1)[0]))

    # Every plot image is there and the browser decoded it.
    assert [i["id"] for i in state["images"]] == PLOT_IDS
    for image in state["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    for plot_id in PLOT_IDS:
        tag, attrs = parsed.by_id(plot_id)
        assert tag == "img" and attrs["src"].startswith("data:image/png;base64,")
    # Self-contained: no script, stylesheet or image of its own to fetch.
    source = Elements(page.read_text())
    assert not [t for t, _ in source.elements if t in ("script", "link", "iframe")]
    assert all(a["src"].startswith("data:") for t, a in source.elements if t == "img")

    # The comparison table: one row per run, the headers and the run ids as text.
    assert state["rows"] == len(RUN_IDS)
    assert parsed.by_id("comparison-table")[0] == "table"
    text = " ".join(parsed.text)
    for header in ("F1", "peak memory", "memory saving %", "ROUGE-L", "intensity drift"):
        assert header in text
    for run_id in RUN_IDS:
        assert run_id in text
    assert "of 1 comparison at similar memory" in text  # the claim check's verdict
    assert parsed.by_id("verdict")[0] == "section" and parsed.by_id("fidelity")[0] == "section"

    # Generated text is shown as text, never as markup.
    assert state["marquees"] == 0
    assert HOSTILE in text

    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1400, 3000)
    from PIL import Image

    with Image.open(screenshot) as image:
        colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 100, "the screenshot is (nearly) blank"


def test_report_from_an_s3_prefix(
    evaluation: Path,
    s3_server: "MinioServer",
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`quanteval report s3://...` reads the runs from S3 and writes the report next to them."""
    client = s3_server.client()
    prefix = "quanteval/default/hand-made-0123"
    for path in evaluation.rglob("*"):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(evaluation).as_posix()}"
            client.put_object(Bucket=s3_bucket, Key=key, Body=path.read_bytes())
    client.put_object(Bucket=s3_bucket, Key=f"{prefix}/runs/small-nf4/generations.jsonl", Body=b"")
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    root = f"s3://{s3_bucket}/{prefix}"

    assert main(["report", root]) == 0

    assert f"{root}/report.html" in capsys.readouterr().err
    report = from_json(
        client.get_object(Bucket=s3_bucket, Key=f"{prefix}/report.json")["Body"].read()
    )
    assert [(r.run_id, r.state) for r in report.runs] == [
        ("big-fp32", "Succeeded"),
        ("big-nf4", "Succeeded"),
        ("small-fp32", "Succeeded"),
        ("small-bf16", "Succeeded"),
        ("small-nf4", "Failed"),
    ]
    assert report.source == root
    assert report.claim.wins == 1
    for name in ("report.csv", "report.md", "report.html", "report.png"):
        assert client.get_object(Bucket=s3_bucket, Key=f"{prefix}/{name}")["ContentLength"] > 0
