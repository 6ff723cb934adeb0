"""hw/: the wiring diagrams, BOM, config.txt fragments, power budget and enclosure agree with
their sources (the pin map, bom.csv, the fragments, power.toml, the OpenSCAD file)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
HW = REPO / "hw"
SVG = "{http://www.w3.org/2000/svg}"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(TOOLS))
    try:
        spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(TOOLS))


wiring = _load("hw_wiring")
bom = _load("hw_bom")
config = _load("hw_config")
power = _load("hw_power")
docs = _load("hw_docs")

# The standard Raspberry Pi 40-pin header, written out independently of tools/hw_wiring.py:
# physical pins 1..40 in order, BCM GPIO number or supply name.
HEADER_TEXT = (
    "3V3 5V 2 5V 3 GND 4 14 GND 15 17 18 27 GND 22 23 3V3 24 10 GND "
    "9 25 11 8 GND 7 0 1 5 GND 6 12 13 GND 19 16 26 20 GND 21"
)
STANDARD_HEADER = HEADER_TEXT.split()


# --- wiring ---------------------------------------------------------------------------------


def test_header_table_is_the_standard_40_pin_mapping() -> None:
    assert len(wiring.HEADER) == 40
    for pin, expected in enumerate(STANDARD_HEADER, start=1):
        assert str(wiring.HEADER[pin]) == expected, f"header pin {pin}"
    gpios = sorted(v for v in wiring.HEADER.values() if isinstance(v, int))
    assert gpios == list(range(28))


def test_pin_map_agrees_with_the_header_and_has_no_shared_pins() -> None:
    roles = wiring.load_roles()
    assert roles, "the pin map has no roles"
    assert wiring.validate(roles) == []
    assert len({r.gpio for r in roles}) == len(roles)
    assert len({r.header for r in roles}) == len(roles)
    for role in roles:
        assert wiring.HEADER[role.header] == role.gpio, role.name
    power_pins = [pin for pin, _part, _what in wiring.POWER]
    assert not set(power_pins) & {r.header for r in roles}


def test_validate_refuses_a_wrong_pin_map() -> None:
    role = wiring.Role
    bad = [
        role("a", 17, 12, "input", "x", ""),  # header 12 is GPIO18
        role("b", 22, 15, "input", "x", ""),
        role("c", 22, 15, "input", "x", ""),  # shares GPIO22 and pin 15 with b
        role("d", 5, 6, "input", "x", ""),  # pin 6 is GND
    ]
    errors = "\n".join(wiring.validate(bad))
    assert "a: header pin 12 is GPIO18" in errors
    assert "c and b share GPIO 22" in errors
    assert "c and b share pin 15" in errors
    assert "d: header pin 6 is GND" in errors
    with pytest.raises(ValueError):
        wiring.render("zero2w", bad)


def test_wiring_svgs_are_up_to_date() -> None:
    for path, svg in wiring.outputs(wiring.load_roles()).items():
        assert path.is_file(), f"{path} is missing: run python tools/hw_wiring.py"
        assert path.read_text() == svg, f"{path} is stale: run python tools/hw_wiring.py"


@pytest.mark.parametrize("board", sorted(wiring.BOARDS))
def test_wiring_svg_is_well_formed_and_shows_every_pin(board: str) -> None:
    root = ET.parse(HW / f"wiring-{board}.svg").getroot()
    assert root.tag == f"{SVG}svg"
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("id")}
    for pin in range(1, 41):
        assert f"pin-{pin}" in groups, f"header pin {pin} not drawn"
    for role in wiring.load_roles():
        group = groups.get(f"role-{role.name}")
        assert group is not None, f"{role.name} not in the {board} diagram"
        assert group.get("data-gpio") == str(role.gpio)
        assert group.get("data-header") == str(role.header)
        words = " ".join(t.text or "" for t in group.iter(f"{SVG}text"))
        assert f"GPIO{role.gpio}" in words and role.name in words
        assert role.part[:40] in words, f"{role.name}: part not labelled"
        assert root.find(f".//{SVG}polyline[@id='wire-{role.name}']") is not None
    for pin, part, _what in wiring.POWER:
        assert f"supply-{pin}-{part}" in groups


# --- bill of materials ----------------------------------------------------------------------


def test_bom_parses_and_every_row_has_a_price_and_a_source() -> None:
    rows = bom.load()
    assert rows
    assert bom.problems(rows) == []
    for row in rows:
        assert float(row["unit_price"]) >= 0 and row["currency"] and row["source"].strip()
        if row["price_status"] == "verified":
            assert "http" in row["source"], f"{row['item']}: verified price without a link"
    items = " ".join(r["item"] for r in rows)
    for needed in ("Zero 2 W", "Pi 5", "Camera Module 3", "PiSugar 3", "Coral", "AI HAT+"):
        assert needed in items


def test_bom_table_in_the_readme_matches_the_csv() -> None:
    readme = (HW / "README.md").read_text()
    assert docs.block(readme, bom.BLOCK) == bom.table(bom.load())


def test_bom_problems_are_reported() -> None:
    row = dict.fromkeys(bom.COLUMNS, "x")
    row.update(unit_price="", board="pi4", price_status="cheap", qty="one", source="")
    found = "\n".join(bom.problems([row]))
    for fragment in ("no source", "not a price", "board must be", "price_status", "qty"):
        assert fragment in found


# --- config.txt -----------------------------------------------------------------------------


def test_combined_config_is_the_concatenation_of_the_fragments() -> None:
    combined = (HW / "config" / "config-pendant.txt").read_text()
    assert combined == config.combined()
    for name in config.PARTS:
        assert (HW / "config" / name).read_text().strip() in combined


def test_every_overlay_named_is_a_documented_raspberry_pi_overlay() -> None:
    assert config.unknown_overlays() == []
    named = config.overlays_in(config.combined())
    assert {"adau7002-simple", "imx708", "imx500", "pwm-2chan"} <= set(named)


def test_config_enables_i2c_and_the_mic_and_leaves_the_pwm_pins_to_gpiozero() -> None:
    live = [
        line.strip()
        for line in config.combined().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert "dtparam=i2c_arm=on" in live
    assert "dtoverlay=adau7002-simple" in live
    assert not any(line.startswith("dtoverlay=pwm") for line in live)
    pwm_pins = {r.gpio for r in wiring.load_roles() if r.kind == "pwm"}
    assert pwm_pins == {12, 13}  # the pins the commented pwm-2chan line would claim


# --- power budget ---------------------------------------------------------------------------


def test_power_tables_match_the_data() -> None:
    data, cpu = power.load(), power.load_cpu()
    want = power.table(data, cpu)
    for page in power.PAGES:
        assert docs.block(page.read_text(), power.BLOCK) == want, f"{page} is stale"
    days = docs.block(power.DAYS_PAGE.read_text(), power.DAYS_BLOCK)
    assert days == power.days_block(data, cpu), f"{power.DAYS_PAGE} is stale"


def test_power_model_is_sourced_and_ordered() -> None:
    data = power.load()
    sources = data["sources"]
    for board in data["boards"].values():
        assert board["idle_source"] in sources and board["busy_source"] in sources
    for key in ("mic_source", "camera_source", "led_source"):
        assert data["peripherals"][key] in sources
    for name, setting in data["settings"].items():
        assert setting["source"] in sources, name
        assert setting["estimate"] and setting["where"], name
    by_board: dict[str, list[float]] = {}
    for row in power.rows(data):
        by_board.setdefault(row.board, []).append(row.hours[0])
    for board, hours in by_board.items():
        assert hours == sorted(hours, reverse=True), f"{board}: idle > listening > capturing"
    assert 0 < data["battery"]["boost_efficiency"] < 1


# --- enclosure ------------------------------------------------------------------------------


def test_enclosure_preview_is_a_png() -> None:
    assert (HW / "enclosure" / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("openscad") is None, reason="openscad is not installed")
@pytest.mark.parametrize("board", ["zero2w", "pi5"])
def test_enclosure_compiles_without_warnings(board: str, tmp_path: Path) -> None:
    out = tmp_path / f"{board}.stl"
    result = subprocess.run(
        ["openscad", "-o", str(out), "-D", f'board="{board}"', "pendant.scad"],
        cwd=HW / "enclosure",
        capture_output=True,
        text=True,
        timeout=240,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "WARNING" not in log.upper() and "ERROR" not in log.upper(), log
    assert out.stat().st_size > 1000
    assert f"pendant {board}: outside" in log
