"""Draw the pendant's wiring diagrams from the pin map, the one source the code also reads.

    python tools/hw_wiring.py           # (re)write hw/wiring-zero2w.svg and hw/wiring-pi5.svg
    python tools/hw_wiring.py --check   # exit 1 if a committed SVG differs from the pin map

The pin map is ``device/pendant/data/pins.toml`` when the package carries it, else
``hw/pins.toml``. Every role in it is drawn on a 2 x 20 picture of the 40-pin header, labelled
with its GPIO number, its role and its part, with a wire to the part's box. The supply and ground
wires (3V3, 5V, GND) are not GPIO roles, so they are listed here in :data:`POWER`; they too are
checked against the header table.

:data:`HEADER` is the standard Raspberry Pi 40-pin header (BCM numbering), the same on a Pi Zero
2 W and a Pi 5. :func:`validate` refuses a pin map whose header pin and GPIO disagree with it,
that puts two roles on one GPIO or one header pin, or that puts a role on a supply pin. The SVG
is plain text built here (no drawing library), deterministic, with no date in it.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

REPO = Path(__file__).resolve().parents[1]
PIN_MAP_PLACES = (REPO / "device" / "pendant" / "data" / "pins.toml", REPO / "hw" / "pins.toml")
OUT = REPO / "hw"

# The 40-pin header: physical pin -> BCM GPIO number, or the supply it carries. Raspberry Pi
# documentation, "GPIO and the 40-pin header" (identical on every 40-pin model, Zero 2 W and 5
# included). Pins 27/28 are GPIO 0/1, reserved for the HAT ID EEPROM.
HEADER: dict[int, int | str] = {
    1: "3V3", 2: "5V", 3: 2, 4: "5V", 5: 3, 6: "GND", 7: 4, 8: 14, 9: "GND", 10: 15,
    11: 17, 12: 18, 13: 27, 14: "GND", 15: 22, 16: 23, 17: "3V3", 18: 24, 19: 10, 20: "GND",
    21: 9, 22: 25, 23: 11, 24: 8, 25: "GND", 26: 7, 27: 0, 28: 1, 29: 5, 30: "GND",
    31: 6, 32: 12, 33: 13, 34: "GND", 35: 19, 36: 16, 37: 26, 38: 20, 39: "GND", 40: 21,
}  # fmt: skip

# Supply and ground wires: (header pin, part, what the wire does). The parts are the boxes the
# pin map's roles fall into (see part_of); "mute_switch" pole B switches the mic's 3V3.
POWER: tuple[tuple[int, str, str], ...] = (
    (1, "mute_switch", "3V3 to pole B (live throw) -> mic VDD"),
    (2, "battery", "5V from the PiSugar (pogo pin)"),
    (4, "battery", "5V from the PiSugar (pogo pin)"),
    (6, "battery", "GND to the PiSugar (pogo pin)"),
    (9, "button", "GND, the button's other leg"),
    (14, "mute_switch", "GND to pole A (muted throw)"),
    (17, "haptic", "3V3 -> motor +, 1N4148 across the motor"),
    (30, "haptic", "GND -> 2N7000 source"),
    (34, "led", "GND -> LED cathode"),
    (39, "mic", "GND -> mic GND and L/R select (left channel)"),
)

# A wire between two parts, not through the header.
LINKS: tuple[tuple[str, str, str], ...] = (
    ("mute_switch", "mic", "pole B common -> mic VDD: muted = unpowered"),
)

BOARDS: dict[str, dict[str, object]] = {
    "zero2w": {
        "title": "Raspberry Pi Zero 2 W",
        "battery": "PiSugar 3, 1200 mAh, under the board on pogo pins",
        "camera": "Camera Module 3 (or AI Camera) on the 22-pin CSI port, Zero cable",
        "notes": (
            "Pi Zero 2 W: one 22-pin CSI port; the PiSugar 3 (65 x 30 mm) sits under the board.",
            "Mic: ALSA card from dtoverlay=adau7002-simple (hw/config/i2s-mic.txt).",
        ),
    },
    "pi5": {
        "title": "Raspberry Pi 5",
        "battery": "PiSugar 3 Plus, 5000 mAh, under the board on pogo pins",
        "camera": "Camera Module 3 (or AI Camera) on CAM/DISP 0, 22-pin cable",
        "notes": (
            "Pi 5: two 22-pin CAM/DISP ports (same small cable as the Zero); use port 0.",
            "Optional AI HAT+ (Hailo) on the PCIe FFC: fit it with a stacking header so every",
            "pin above stays reachable. A Coral USB Accelerator goes in a USB 3 port instead.",
        ),
    },
}

SUPPLY_COLOURS = {"3V3": "#e67e22", "5V": "#c0392b", "GND": "#222222"}
PART_COLOURS = {
    "button": "#2471a3",
    "mute_switch": "#7d3c98",
    "led": "#1e8449",
    "haptic": "#b9770e",
    "mic": "#117a65",
    "battery": "#922b21",
    "camera": "#566573",
}
FALLBACK_COLOURS = ("#34495e", "#a04000", "#1a5276", "#7b241c")


@dataclass(frozen=True)
class Role:
    name: str
    gpio: int
    header: int
    kind: str
    part: str
    purpose: str


@dataclass
class Box:
    key: str
    title: str
    lines: list[str]
    side: str = "left"
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    ports: list[float] = field(default_factory=list)


def pin_map_path() -> Path:
    for place in PIN_MAP_PLACES:
        if place.is_file():
            return place
    raise FileNotFoundError("no pin map: looked for " + ", ".join(map(str, PIN_MAP_PLACES)))


def load_roles(path: Path | None = None) -> list[Role]:
    data = tomllib.loads((path or pin_map_path()).read_text())
    return [
        Role(
            name=name,
            gpio=int(entry["gpio"]),
            header=int(entry["header"]),
            kind=str(entry.get("kind", "")),
            part=str(entry.get("part", "")),
            purpose=str(entry.get("purpose", "")),
        )
        for name, entry in data.items()
        if isinstance(entry, dict)
    ]


def validate(roles: list[Role]) -> list[str]:
    """Every way the pin map can disagree with the header or with itself, as messages."""
    errors = []
    by_gpio: dict[int, str] = {}
    by_header: dict[int, str] = {}
    for role in roles:
        expected = HEADER.get(role.header)
        if expected is None:
            errors.append(f"{role.name}: header pin {role.header} is not on a 40-pin header")
        elif isinstance(expected, str):
            errors.append(f"{role.name}: header pin {role.header} is {expected}, not a GPIO")
        elif expected != role.gpio:
            errors.append(
                f"{role.name}: header pin {role.header} is GPIO{expected}, not GPIO{role.gpio}"
            )
        for seen, key, what in ((by_gpio, role.gpio, "GPIO"), (by_header, role.header, "pin")):
            if key in seen:
                errors.append(f"{role.name} and {seen[key]} share {what} {key}")
            seen[key] = role.name
    for header, part, _what in POWER:
        if not isinstance(HEADER.get(header), str):
            errors.append(f"power wire to {part} uses header pin {header}, which is not a supply")
        if header in by_header:
            errors.append(f"power wire to {part} uses header pin {header}, taken by a role")
    return errors


def part_of(role: Role) -> str:
    """The box a role wires to: all I2S pins go to the mic, all I2C pins to the battery board."""
    return {"i2s": "mic", "i2c": "battery"}.get(role.kind, role.name)


def wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


# Geometry (px).
WIDTH = 1500
PITCH = 30
TOP = 150
LEFT_PIN_X = 735
RIGHT_PIN_X = 765
LANE_START = 405
LANE_STEP = 11
BOX_W = 250
BOX_MARGIN = 20


def pin_xy(header: int) -> tuple[float, float]:
    row = (header - 1) // 2
    return (LEFT_PIN_X if header % 2 else RIGHT_PIN_X), TOP + row * PITCH


def side_of(header: int) -> str:
    return "left" if header % 2 else "right"


def text(x: float, y: float, body: str, size: float = 11, anchor: str = "start", **attrs) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(str(v))}" for k, v in attrs.items())
    return (
        f'<text x="{x:g}" y="{y:g}" font-size="{size:g}" text-anchor="{anchor}"{extra}>'
        f"{escape(body)}</text>"
    )


def render(board: str, roles: list[Role]) -> str:
    """The wiring diagram for one board as SVG text."""
    errors = validate(roles)
    if errors:
        raise ValueError("pin map is inconsistent:\n  " + "\n  ".join(errors))
    info = BOARDS[board]
    by_header = {role.header: role for role in roles}

    # The boxes: one per part, titled from the pin map's own part text.
    boxes: dict[str, Box] = {}
    for role in roles:
        key = part_of(role)
        if key not in boxes:
            title = {"mic": "Microphone (I2S)", "battery": "Battery board (I2C)"}.get(
                key, key.replace("_", " ").capitalize()
            )
            lines = wrap(role.part, 40)
            if key == "battery":
                lines += wrap(str(info["battery"]), 40)
            boxes[key] = Box(key, title, lines)
    boxes["camera"] = Box("camera", "Camera (CSI ribbon)", wrap(str(info["camera"]), 40))

    # Connections: (header pin, part, label line 1, label line 2, colour).
    conns: list[tuple[int, str, str, str, str]] = []
    for role in roles:
        key = part_of(role)
        colour = PART_COLOURS.get(key, FALLBACK_COLOURS[len(conns) % len(FALLBACK_COLOURS)])
        conns.append((role.header, key, f"GPIO{role.gpio} {role.name}", role.part, colour))
    for header, key, what in POWER:
        supply = str(HEADER[header])
        conns.append((header, key, f"{supply} -> {key.replace('_', ' ')}", what, ""))
    conns.sort()

    # Each box sits on the side holding most of its pins, next to their mean height.
    for key, box in boxes.items():
        pins = [c[0] for c in conns if c[1] == key]
        left = sum(1 for p in pins if side_of(p) == "left")
        box.side = "left" if left * 2 >= len(pins) and pins else "right"
        if key == "camera":
            box.side = "right"
        box.ports = [pin_xy(p)[1] for p in pins]  # provisional, for ordering
    placed_bottom = {"left": TOP - 40.0, "right": TOP - 40.0}
    order = sorted(
        boxes.values(),
        key=lambda b: (sum(b.ports) / len(b.ports)) if b.ports else 1e9,
    )
    for box in order:
        n_ports = max(1, len(box.ports))
        box.w = BOX_W
        box.h = max(34 + 13 * len(box.lines), 24 + 14 * n_ports)
        want = (
            (sum(box.ports) / len(box.ports) - box.h / 2) if box.ports else placed_bottom["right"]
        )
        box.y = max(want, placed_bottom[box.side] + BOX_MARGIN)
        placed_bottom[box.side] = box.y + box.h
        box.x = BOX_MARGIN if box.side == "left" else WIDTH - BOX_MARGIN - BOX_W
        box.ports = []

    header_bottom = TOP + 19 * PITCH
    channel_y = header_bottom + 40
    lanes = {"left": 0, "right": 0}
    wires: list[str] = []
    labels: list[str] = []

    def lane_x(side: str) -> float:
        n = lanes[side]
        lanes[side] += 1
        return LANE_START - n * LANE_STEP if side == "left" else WIDTH - LANE_START + n * LANE_STEP

    # Ports on each box, in the order of the pins that feed them (fewer crossings).
    per_box: dict[str, list[int]] = {}
    for header, key, *_ in conns:
        per_box.setdefault(key, []).append(header)
    port_y: dict[tuple[int, str], float] = {}
    for key, pins in per_box.items():
        box = boxes[key]
        pins.sort(key=lambda p: (side_of(p) != box.side, pin_xy(p)[1]))
        for i, p in enumerate(pins):
            port_y[(p, key)] = box.y + 20 + i * 14

    crossings = 0
    for header, key, line1, line2, colour in conns:
        px, py = pin_xy(header)
        supply = HEADER[header]
        stroke = SUPPLY_COLOURS[supply] if isinstance(supply, str) else colour
        side = side_of(header)
        box = boxes[key]
        ty = port_y[(header, key)]
        edge = box.x + box.w if box.side == "left" else box.x
        out = px - 11 if side == "left" else px + 11
        lx = lane_x(side)
        points = [(out, py), (lx, py)]
        if box.side == side:
            points += [(lx, ty), (edge, ty)]
        else:
            cy = channel_y + crossings * 10
            crossings += 1
            lx2 = lane_x(box.side)
            points += [(lx, cy), (lx2, cy), (lx2, ty), (edge, ty)]
        path = " ".join(f"{x:g},{y:g}" for x, y in points)
        role = by_header.get(header)
        ident = f"wire-{role.name}" if role else f"wire-power-{header}-{key}"
        wires.append(
            f'<polyline id="{ident}" points="{path}" fill="none" stroke="{stroke}" '
            f'stroke-width="2" stroke-linejoin="round"/>'
        )
        wires.append(f'<circle cx="{edge:g}" cy="{ty:g}" r="3" fill="{stroke}"/>')
        anchor = "end" if side == "left" else "start"
        tx = px - 20 if side == "left" else px + 20
        attrs = {"fill": "#000"}
        group_attrs = (
            f' id="role-{role.name}" data-gpio="{role.gpio}" data-header="{role.header}"'
            if role
            else f' id="supply-{header}-{key}" data-header="{header}"'
        )
        labels.append(
            f"<g{group_attrs}>"
            + text(tx, py - 3, f"{header}: {line1}", 11, anchor, font_weight="bold", **attrs)
            + text(tx, py + 9, line2[:52] + ("..." if len(line2) > 52 else ""), 9, anchor)
            + "</g>"
        )

    # The camera hangs off the CSI port below the header, under every wire.
    cam = boxes["camera"]
    cam.y = channel_y + crossings * 10 + 20
    cam.x = WIDTH / 2 + 60

    # Links between boxes (the mute switch's second pole feeds the mic).
    link_paths = []
    for a, b, what in LINKS:
        if a in boxes and b in boxes:
            ba, bb = boxes[a], boxes[b]
            x = 8 if ba.side == "left" else WIDTH - 8
            ea = ba.x if ba.side == "left" else ba.x + ba.w
            eb = bb.x if bb.side == "left" else bb.x + bb.w
            ya, yb = ba.y + ba.h - 10, bb.y + 12
            link_paths.append(
                f'<polyline id="link-{a}-{b}" points="{ea:g},{ya:g} {x:g},{ya:g} {x:g},{yb:g} '
                f'{eb:g},{yb:g}" fill="none" stroke="{SUPPLY_COLOURS["3V3"]}" stroke-width="2" '
                f'stroke-dasharray="6 3"/>'
            )
            link_paths.append(text(x + 4, (ya + yb) / 2, what, 9, "start", fill="#7d3c98"))

    height = max(b.y + b.h + 20 for b in boxes.values())
    notes_y = height + 10
    notes = [
        "3V3 / 5V / GND wires are drawn in orange / red / black; GPIO wires in the part's colour.",
        "Generated by tools/hw_wiring.py from the pin map (pins.toml): edit the map, not this.",
        *info["notes"],  # type: ignore[misc]
    ]
    total_h = notes_y + 18 * len(notes) + 20

    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total_h:g}" '
        f'viewBox="0 0 {WIDTH} {total_h:g}" font-family="DejaVu Sans, Arial, sans-serif">',
        f"<title>Pendant wiring: {escape(str(info['title']))}</title>",
        "<desc>40-pin header (2 x 20, BCM GPIO numbers) with every role of the pendant's pin map "
        "and the supply wires to each part.</desc>",
        f'<rect width="{WIDTH}" height="{total_h:g}" fill="#ffffff"/>',
        text(WIDTH / 2, 40, f"Pendant wiring - {info['title']}", 22, "middle", font_weight="bold"),
        text(
            WIDTH / 2,
            64,
            "40-pin header seen from above, pin 1 at top left; odd pins left, even pins right",
            12,
            "middle",
        ),
    ]
    # The board and its header.
    bx0, by0 = LEFT_PIN_X - 40, TOP - 50
    out.append(
        f'<rect id="board" x="{bx0}" y="{by0}" width="{RIGHT_PIN_X - LEFT_PIN_X + 80}" '
        f'height="{header_bottom - by0 + 60:g}" rx="10" fill="#e8f6ef" stroke="#1e8449"/>'
    )
    out.append(text(WIDTH / 2, by0 + 18, str(info["title"]), 11, "middle", font_weight="bold"))
    out.append(
        f'<rect id="csi" x="{WIDTH / 2 - 25:g}" y="{header_bottom + 18:g}" width="50" '
        f'height="12" fill="#fdfefe" stroke="#566573"/>'
    )
    out.append(text(WIDTH / 2, header_bottom + 28, "CSI", 9, "middle"))
    out += wires
    for header, what in sorted(HEADER.items()):
        x, y = pin_xy(header)
        used = header in by_header or any(p == header for p, *_ in POWER)
        if isinstance(what, str):
            fill = SUPPLY_COLOURS[what]
        elif header in by_header:
            fill = PART_COLOURS.get(part_of(by_header[header]), "#34495e")
        else:
            fill = "#d5d8dc"
        shape = (
            f'<rect x="{x - 9:g}" y="{y - 9:g}" width="18" height="18" fill="{fill}"/>'
            if header == 1
            else f'<circle cx="{x:g}" cy="{y:g}" r="9" fill="{fill}"/>'
        )
        name = what if isinstance(what, str) else f"GPIO{what}"
        colour = "#ffffff" if used or isinstance(what, str) else "#555555"
        out.append(
            f'<g id="pin-{header}" data-name="{name}">{shape}'
            + text(x, y + 3.5, str(header), 8, "middle", fill=colour)
            + "</g>"
        )
        if not used:
            gx = x - 14 if header % 2 else x + 14
            out.append(text(gx, y + 3, name, 8, "end" if header % 2 else "start", fill="#999"))
    out += labels
    # The camera's ribbon.
    out.append(
        f'<polyline id="ribbon-camera" points="{WIDTH / 2:g},{header_bottom + 30:g} '
        f'{WIDTH / 2:g},{cam.y + cam.h / 2:g} {cam.x:g},{cam.y + cam.h / 2:g}" fill="none" '
        f'stroke="{PART_COLOURS["camera"]}" stroke-width="5" stroke-dasharray="10 4" '
        f'stroke-opacity="0.6"/>'
    )
    for box in boxes.values():
        colour = PART_COLOURS.get(box.key, "#34495e")
        out.append(
            f'<g id="part-{box.key}"><rect x="{box.x:g}" y="{box.y:g}" width="{box.w:g}" '
            f'height="{box.h:g}" rx="6" fill="#fbfcfc" stroke="{colour}" stroke-width="2"/>'
        )
        out.append(text(box.x + 10, box.y + 16, box.title, 12, font_weight="bold", fill=colour))
        for i, line in enumerate(box.lines):
            out.append(text(box.x + 10, box.y + 32 + 13 * i, line, 10))
        out.append("</g>")
    out += link_paths
    for i, note in enumerate(notes):
        out.append(text(40, notes_y + 18 * i, str(note), 11))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def outputs(roles: list[Role]) -> dict[Path, str]:
    return {OUT / f"wiring-{board}.svg": render(board, roles) for board in BOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    roles = load_roles()
    stale = []
    for path, svg in outputs(roles).items():
        if path.is_file() and path.read_text() == svg:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(svg)
    for path in stale:
        verb = "out of date" if args.check else "wrote"
        print(f"{verb}: {path.relative_to(REPO)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
