"""The pendant's body: button gestures, the privacy switch, LED, haptics, battery gauge.

- `pins`: the pin map (`pendant/data/pins.toml`);
- `gpio`: gpiozero pin factories ('lgpio' on the Pi, 'mock' elsewhere);
- `hardware`: the devices on the pins, handing edges to the event loop;
- `gestures`: what a press, a double press and the holds mean (pure logic);
- `indicators`: which LED pattern the bus events call for (pure logic);
- `feedback`: every buzz and the LED's answers to the wearer (understood, not understood,
  confirm, attention), in one table;
- `led`, `haptic`, `player`: patterns and buzzes played from the event loop;
- `battery`: the gauge interface and its backends ('pisugar3', 'simulated');
- `service`: `BodyService`, all of it on the bus, and `serve` for systemd.

Importing this package imports no hardware library; the configured backends load on use.
"""
