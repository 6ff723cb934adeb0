// Pendant enclosure: a two-part box (body + lid) for a Pi Zero 2 W or a Pi 5 with its PiSugar
// battery board, camera, mic, button, LED light pipe, privacy slide switch and lanyard loop.
//
// Every size below is a parameter; set them on the command line, e.g.
//   openscad -o pendant-zero2w.stl -D 'board="zero2w"' -D 'part="body"' pendant.scad
//   openscad -o lid.stl -D 'board="pi5"' -D 'part="lid"' pendant.scad
// Units: mm. The body's floor is z = 0; the lid (the face with the camera) is on top, so the
// camera looks forward when the pendant hangs from the loop. Measure your own parts before
// printing: battery cells and camera lens positions vary between batches and sellers.

/* [What to make] */
board = "zero2w";          // [zero2w, pi5]
part = "assembly";         // [assembly, body, lid]

/* [Walls] */
wall = 2.0;                // wall, floor and lid thickness
corner_r = 4.0;            // outer corner radius
clearance = 1.0;           // gap around the stack inside the walls
lid_lip = 2.0;             // depth of the lid's locating lip
fit = 0.2;                 // lip-to-wall play per side

/* [Stack, bottom to top] */
// PiSugar board + its cell under the Pi, then the Pi, then the camera under the lid.
zero_board = [65, 30, 6];      // Pi Zero 2 W: 65 x 30 mm (datasheet), height with parts/wires
pi5_board = [85, 56, 17];      // Pi 5: 85 x 56 mm, height to the top of the USB/Ethernet jacks
zero_battery = [65, 30, 10];   // PiSugar 3 (65 x 30 mm PCB) + its 1200 mAh cell
pi5_battery = [65, 56, 14];    // PiSugar 3 Plus (65 x 56 mm PCB) + its 5000 mAh cell
camera = [25, 24, 11.5];       // Camera Module 3 board and lens height
wiring_gap = 3.0;              // room for the wires to mic, button, LED, switch and motor

/* [Openings] */
camera_hole_d = 9.0;       // lens opening in the lid
camera_at = [0.5, 0.5];    // lens position as a fraction of the lid (x, y)
mic_hole_d = 1.6;          // acoustic port over the mic
mic_at = [0.85, 0.5];
led_pipe_d = 3.2;          // 3 mm light pipe (or the LED itself) through the lid
led_at = [0.15, 0.5];
button_d = 4.5;            // tactile switch plunger, on the +y side wall
button_at = 0.35;          // position along x, fraction of the length
switch_slot = [8.5, 4.0];  // slide switch slot (length x height), on the -y side wall
switch_at = 0.65;
usbc = [9.6, 3.6];         // USB-C plug opening for PiSugar charging, on the -x end wall
usbc_z = 4.0;              // height of the port's centre above the inner floor

/* [Lanyard loop] */
loop_hole_d = 5.0;
loop_thick = 4.0;
loop_reach = 9.0;          // how far the loop sticks out past the +x end

$fn = 48;

board_dims = board == "pi5" ? pi5_board : zero_board;
battery_dims = board == "pi5" ? pi5_battery : zero_battery;

inner_l = max(board_dims[0], battery_dims[0], camera[0]) + 2 * clearance;
inner_w = max(board_dims[1], battery_dims[1], camera[1]) + 2 * clearance;
inner_h = battery_dims[2] + board_dims[2] + camera[2] + wiring_gap;
outer_l = inner_l + 2 * wall;
outer_w = inner_w + 2 * wall;
body_h = inner_h + wall;   // floor + inside; the lid closes the top

echo(str("pendant ", board, ": outside ", outer_l, " x ", outer_w, " x ", body_h + wall, " mm"));

module rounded_box(size, r) {
    // A box with rounded vertical edges, from hulled cylinders (fast, no minkowski).
    rr = min(r, size[0] / 2 - 0.01, size[1] / 2 - 0.01);
    hull() for (x = [rr, size[0] - rr], y = [rr, size[1] - rr])
        translate([x, y, 0]) cylinder(r = rr, h = size[2]);
}

module slot(size, depth) {
    // A stadium-shaped opening, size = [length, height], cut along y through a wall.
    r = size[1] / 2;
    rotate([90, 0, 0]) hull() for (x = [-size[0] / 2 + r, size[0] / 2 - r])
        translate([x, 0, -depth / 2]) cylinder(r = r, h = depth);
}

module lanyard_loop() {
    translate([outer_l, outer_w / 2, body_h - loop_thick]) difference() {
        hull() {
            translate([-corner_r, -loop_hole_d, 0]) cube([corner_r, 2 * loop_hole_d, loop_thick]);
            translate([loop_reach - loop_hole_d / 2, 0, 0])
                cylinder(d = loop_hole_d + 2 * wall + 1, h = loop_thick);
        }
        translate([loop_reach - loop_hole_d / 2, 0, -1])
            cylinder(d = loop_hole_d, h = loop_thick + 2);
    }
}

module body() {
    difference() {
        union() {
            rounded_box([outer_l, outer_w, body_h], corner_r);
            lanyard_loop();
        }
        // The inside.
        translate([wall, wall, wall])
            rounded_box([inner_l, inner_w, body_h], max(corner_r - wall, 0.5));
        // Button on the +y wall, at the Pi's height.
        translate([wall + button_at * inner_l, outer_w, wall + battery_dims[2] + board_dims[2]])
            rotate([90, 0, 0]) cylinder(d = button_d, h = 3 * wall, center = true);
        // Privacy slide switch on the -y wall.
        translate([wall + switch_at * inner_l, 0, wall + battery_dims[2] + board_dims[2]])
            slot(switch_slot, 3 * wall);
        // USB-C for charging the PiSugar, on the -x end.
        translate([0, outer_w / 2, wall + usbc_z]) rotate([0, 0, 90]) slot(usbc, 3 * wall);
    }
}

module lid() {
    difference() {
        union() {
            rounded_box([outer_l, outer_w, wall], corner_r);
            // Locating lip that drops inside the body's walls.
            translate([wall + fit, wall + fit, -lid_lip])
                difference() {
                    rounded_box([inner_l - 2 * fit, inner_w - 2 * fit, lid_lip],
                                max(corner_r - wall, 0.5));
                    translate([1.2, 1.2, -1])
                        rounded_box([inner_l - 2 * fit - 2.4, inner_w - 2 * fit - 2.4,
                                     lid_lip + 2], max(corner_r - wall - 1.2, 0.5));
                }
        }
        for (hole = [[camera_at, camera_hole_d], [mic_at, mic_hole_d], [led_at, led_pipe_d]])
            translate([wall + hole[0][0] * inner_l, wall + hole[0][1] * inner_w, -lid_lip - 1])
                cylinder(d = hole[1], h = wall + lid_lip + 2);
    }
}

if (part == "body") {
    body();
} else if (part == "lid") {
    // Printed face down.
    translate([0, outer_w, wall]) rotate([180, 0, 0]) lid();
} else {
    body();
    // Set beside the body, face up, to show the inside, the loop and the holes.
    translate([0, -outer_w - 12, lid_lip]) lid();
}
