"""Small files that must survive a power cut (`pendant.core.state`), shown with the power-cut
harness (`tests.support.powercut`): written, the power cut, and what comes back.

The mute memory is the one that matters most: the ears come back muted after a restart only
if the mute was on the disk, and before `pendant.core.state` it was written with no fsync at all,
so a power cut within ext4's commit interval (30 s on the image) after a mute brought the
microphone back on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pendant.core import state as durable
from pendant.core.state import MuteMemory
from tests.support.powercut import VolatileMount


def test_a_mute_survives_a_power_cut(disk: VolatileMount) -> None:
    memory = MuteMemory(str(disk.mountpoint))
    memory.save(True)
    disk.cut()
    assert MuteMemory(str(disk.mountpoint)).load() is True


def test_an_unmute_after_a_mute_survives_a_power_cut(disk: VolatileMount) -> None:
    memory = MuteMemory(str(disk.mountpoint))
    assert memory.path is not None
    durable.write_file(memory.path, '{"mic": true}')  # a mute already on the disk
    memory.save(False)
    disk.cut()
    assert MuteMemory(str(disk.mountpoint)).load() is False


def test_a_replaced_file_is_the_new_one_whole_after_a_cut_and_keeps_its_mode(
    disk: VolatileMount,
) -> None:
    path = disk.mountpoint / "secret"
    durable.write_file(path, b"old")
    durable.write_file(path, "new", 0o640)
    disk.cut()
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in disk.mountpoint.iterdir()] == ["secret"]  # no temporary left


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    durable.write_file(path, b"old")
    with pytest.raises(TypeError):
        durable.write_file(path, 3)  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_what_first_boot_provisions_survives_a_power_cut_right_after(
    disk: VolatileMount,
) -> None:
    """Provisioning's configs, passwords and certificates are on the disk when it returns:
    before, none was fsynced, so a power cut soon after first boot could leave an empty
    `server.key` beside its certificate, and nothing would make a new one."""
    import os
    import pwd

    from pendant.app.local_broker import free_port
    from pendant.setup.provision import provision

    root = disk.mountpoint / "root"
    prov = provision(
        root,
        device_id="pendant-cut",
        tls_port=free_port(),
        ws_port=free_port(),
        bind_address="127.0.0.1",
        run_as=pwd.getpwuid(os.getuid()).pw_name,
        add_phones=("anna",),
        # The default, under the root, outgrows a unix socket's 108 bytes in pytest-xdist's
        # deeper temporary directories; provisioning only writes the path into configs.
        socket=f"/tmp/pendant-cut-{os.getpid()}.sock",
    )
    files = sorted(p for p in root.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    assert prov.layout.conf_dir / "server.key" in before
    disk.cut()
    after = {p: p.read_bytes() for p in sorted(p for p in root.rglob("*") if p.is_file())}
    assert after == before
