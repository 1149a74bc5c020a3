"""The Rust a game developer pastes into a Bevy game to load an exported asset.

Numbers come from the sheet JSON and are cast to int, and names are checked identifiers, so nothing from the
JSON can inject code into the snippet.
"""

from __future__ import annotations

from studio.features.asset_writer import KIND_DIRS, check_kind, check_label, check_name

APP_NAME = "DGX-Pixels Studio"


def bevy_snippet(kind: str, name: str, sheet_json: dict) -> str:
    """Rust for Bevy 0.15/0.16 that loads this export: nearest sampling, the atlas layout, a sprite.

    Numbers come from `sheet_json` and are cast to int, and names were validated as identifiers, so nothing
    from the JSON can inject code into the pasted snippet.
    """
    check_name(name)
    check_kind(kind)
    asset = f"{KIND_DIRS[kind]}/{name}/{name}.png"
    w, h = (int(v) for v in sheet_json["tile_size"])
    columns, rows = int(sheet_json["columns"]), int(sheet_json["rows"])
    header = [f"// {name}: {kind} exported by {APP_NAME} ({columns}x{rows} cells of {w}x{h} px)."]
    if kind == "sprite":
        return _render(header, _sprite_setup(asset), animated=None)
    layout_line = (
        f"let layout = layouts.add(TextureAtlasLayout::from_grid(UVec2::new({w}, {h}), {columns}, {rows}, None, None));"
    )
    if kind == "tileset":
        count = int(sheet_json.get("tiles", {}).get("count", columns * rows))
        header.append(f"// Tile i is atlas index i (row-major), 0..={count - 1}.")
        return _render(header, _atlas_setup(asset, layout_line, None), animated=None)
    ranges = {check_label(k, "animation name"): v for k, v in sheet_json.get("animations", {}).items()}
    header.append("// Animations (atlas indices, row-major; row r starts at r * columns):")
    header += [f"//   {a}: {int(v[0])}..={int(v[1])} at {float(v[2]):g} fps" for a, v in ranges.items()]
    first = next(iter(ranges.items()), None)
    return _render(header, _atlas_setup(asset, layout_line, first), animated=first)


def _sprite_setup(asset: str) -> list[str]:
    return [
        "fn setup(mut commands: Commands, asset_server: Res<AssetServer>) {",
        "    commands.spawn(Camera2d);",
        f'    let texture = asset_server.load("{asset}");',
        "    commands.spawn((Sprite::from_image(texture), Transform::from_scale(Vec3::splat(4.0))));",
        "}",
    ]


def _atlas_setup(asset: str, layout_line: str, first: tuple[str, list] | None) -> list[str]:
    lines = [
        "fn setup(",
        "    mut commands: Commands,",
        "    asset_server: Res<AssetServer>,",
        "    mut layouts: ResMut<Assets<TextureAtlasLayout>>,",
        ") {",
        "    commands.spawn(Camera2d);",
        f'    let texture = asset_server.load("{asset}");',
        f"    {layout_line}",
    ]
    start = int(first[1][0]) if first else 0
    lines += [
        "    commands.spawn((",
        f"        Sprite::from_atlas_image(texture, TextureAtlas {{ layout, index: {start} }}),",
        "        Transform::from_scale(Vec3::splat(4.0)),",
    ]
    if first:
        anim, (a, b, fps) = first
        lines += [
            f"        // {anim}",
            f"        AnimationIndices {{ first: {int(a)}, last: {int(b)} }},",
            f"        AnimationTimer(Timer::from_seconds(1.0 / {float(fps)!r}, TimerMode::Repeating)),",
        ]
    return [*lines, "    ));", "}"]


_ANIMATE = [
    "",
    "#[derive(Component)]",
    "struct AnimationIndices {",
    "    first: usize,",
    "    last: usize,",
    "}",
    "",
    "#[derive(Component, Deref, DerefMut)]",
    "struct AnimationTimer(Timer);",
    "",
    "fn animate(time: Res<Time>, mut query: Query<(&AnimationIndices, &mut AnimationTimer, &mut Sprite)>) {",
    "    for (indices, mut timer, mut sprite) in &mut query {",
    "        if !timer.tick(time.delta()).just_finished() {",
    "            continue;",
    "        }",
    "        if let Some(atlas) = &mut sprite.texture_atlas {",
    "            atlas.index = if atlas.index >= indices.last { indices.first } else { atlas.index + 1 };",
    "        }",
    "    }",
    "}",
]


def _render(header: list[str], setup: list[str], animated: tuple[str, list] | None) -> str:
    systems = ".add_systems(Startup, setup)"
    if animated:
        systems += "\n        .add_systems(Update, animate)"
    app = [
        "use bevy::prelude::*;",
        "",
        "fn main() {",
        "    App::new()",
        "        // Pixel art: sample the nearest texel so cells stay crisp and never bleed into each other.",
        "        .add_plugins(DefaultPlugins.set(ImagePlugin::default_nearest()))",
        f"        {systems}",
        "        .run();",
        "}",
        "",
    ]
    return "\n".join([*header, *app, *setup, *(_ANIMATE if animated else [])]) + "\n"
