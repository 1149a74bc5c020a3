//! DGX-Pixels sprite viewer (Bevy 0.16).
//!
//! Reads `assets/sprites/manifest.json`, which `dgx-pixels export` (or the MCP tool `deploy_to_bevy`) keeps up to
//! date, and shows every exported asset in a grid: one row per animation of a sheet, playing at its fps, and every
//! tile of a tileset. PNGs hot-reload through Bevy's `file_watcher`; the manifest itself is polled once a second,
//! so newly exported assets (or a changed grid) appear without restarting. Arrow keys / WASD pan the camera.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bevy::prelude::*;
use bevy::sprite::Anchor;
use serde::Deserialize;

/// Integer upscale so pixel art stays crisp with nearest sampling.
const SCALE: f32 = 4.0;
const GAP: f32 = 8.0;
const LEFT: f32 = -600.0;
const TOP: f32 = 320.0;
const LABEL_WIDTH: f32 = 220.0;
const MANIFEST: &str = "sprites/manifest.json";
const MANIFEST_FORMAT: &str = "dgx-pixels-manifest";
/// Refuse absurd grids from a hand-edited manifest rather than spawn millions of entities.
const MAX_CELLS: usize = 4096;

#[derive(Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    #[serde(default)]
    assets: BTreeMap<String, ManifestEntry>,
}

/// One exported asset. Unknown fields (`sheet`, `source_job`, `updated`, ...) are ignored.
#[derive(Deserialize)]
struct ManifestEntry {
    kind: String,
    name: String,
    /// Relative to the assets folder, exactly what `AssetServer::load` takes.
    image: String,
    tile_size: [u32; 2],
    columns: u32,
    rows: u32,
    /// name -> [first_index, last_index, fps], atlas indices row-major.
    #[serde(default)]
    animations: BTreeMap<String, (u32, u32, f32)>,
    #[serde(default)]
    tiles: Option<TileInfo>,
}

#[derive(Deserialize)]
struct TileInfo {
    count: u32,
}

/// Marks everything spawned from the manifest, so a reload can despawn it.
#[derive(Component)]
struct Shown;

/// Steps `atlas.index` through `first..=last`.
#[derive(Component)]
struct FrameAnimation {
    first: usize,
    last: usize,
    timer: Timer,
}

#[derive(Resource)]
struct ManifestWatch {
    path: PathBuf,
    /// `None` until the first look; then the file's (mtime, size), or `None` inside if it was missing.
    seen: Option<Option<(SystemTime, u64)>>,
    poll: Timer,
}

fn main() {
    let path = assets_dir().join(MANIFEST);
    App::new()
        .insert_resource(ClearColor(Color::srgb(0.10, 0.10, 0.12)))
        .insert_resource(ManifestWatch {
            path,
            seen: None,
            poll: Timer::from_seconds(1.0, TimerMode::Repeating),
        })
        .add_plugins(
            DefaultPlugins
                .set(ImagePlugin::default_nearest())
                .set(AssetPlugin {
                    watch_for_changes_override: Some(true),
                    ..default()
                })
                .set(WindowPlugin {
                    primary_window: Some(Window {
                        title: "DGX-Pixels sprite viewer".into(),
                        ..default()
                    }),
                    ..default()
                }),
        )
        .add_systems(Startup, spawn_camera)
        .add_systems(Update, (watch_manifest, animate, pan_camera))
        .run();
}

/// The folder Bevy's default file source reads: `$BEVY_ASSET_ROOT/assets`, else `$CARGO_MANIFEST_DIR/assets`
/// (set by `cargo run`), else `assets/` beside the executable.
fn assets_dir() -> PathBuf {
    let base = std::env::var_os("BEVY_ASSET_ROOT")
        .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()?
                .parent()
                .map(Path::to_path_buf)
        })
        .unwrap_or_default();
    base.join("assets")
}

fn spawn_camera(mut commands: Commands) {
    commands.spawn(Camera2d);
}

fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "no manifest at {} ({e}).\nExport something with `dgx-pixels export`.",
            path.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a valid manifest: {e}", path.display()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!(
            "{}: format is {:?}, expected {MANIFEST_FORMAT:?}",
            path.display(),
            manifest.format
        ));
    }
    if manifest.version != 1 {
        warn!(
            "manifest version {} is not 1; trying anyway",
            manifest.version
        );
    }
    Ok(manifest)
}

/// Polls the manifest once a second and rebuilds the whole grid whenever it changed (or appeared).
fn watch_manifest(
    mut commands: Commands,
    time: Res<Time>,
    mut watch: ResMut<ManifestWatch>,
    asset_server: Res<AssetServer>,
    mut layouts: ResMut<Assets<TextureAtlasLayout>>,
    shown: Query<Entity, With<Shown>>,
) {
    watch.poll.tick(time.delta());
    if watch.seen.is_some() && !watch.poll.just_finished() {
        return;
    }
    let stamp = std::fs::metadata(&watch.path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())));
    if watch.seen == Some(stamp) {
        return;
    }
    watch.seen = Some(stamp);
    for entity in &shown {
        commands.entity(entity).despawn();
    }
    let manifest = match read_manifest(&watch.path) {
        Ok(manifest) => manifest,
        Err(message) => {
            warn!("{message}");
            spawn_label(&mut commands, message, Vec2::new(LEFT, TOP));
            return;
        }
    };
    info!(
        "showing {} asset(s) from {}",
        manifest.assets.len(),
        watch.path.display()
    );
    if manifest.assets.is_empty() {
        spawn_label(
            &mut commands,
            "The manifest lists no assets yet.",
            Vec2::new(LEFT, TOP),
        );
    }
    let mut y = TOP;
    for (key, entry) in &manifest.assets {
        match spawn_entry(&mut commands, &asset_server, &mut layouts, entry, y) {
            Ok(next_y) => y = next_y,
            Err(message) => warn!("skipping {key}: {message}"),
        }
    }
}

/// Spawns one manifest entry with its top edge at `y`; returns the `y` for the next entry.
fn spawn_entry(
    commands: &mut Commands,
    asset_server: &AssetServer,
    layouts: &mut Assets<TextureAtlasLayout>,
    entry: &ManifestEntry,
    mut y: f32,
) -> Result<f32, String> {
    let [w, h] = entry.tile_size;
    let cells = entry.columns.checked_mul(entry.rows).unwrap_or(0) as usize;
    if w == 0 || h == 0 || cells == 0 || cells > MAX_CELLS {
        return Err(format!(
            "grid of {cells} cells of {w}x{h} px is empty or too large"
        ));
    }
    if entry.image.contains("..") || Path::new(&entry.image).is_absolute() {
        return Err(format!(
            "image path {:?} leaves the assets folder",
            entry.image
        ));
    }
    let texture: Handle<Image> = asset_server.load(entry.image.clone());
    let layout = layouts.add(TextureAtlasLayout::from_grid(
        UVec2::new(w, h),
        entry.columns,
        entry.rows,
        None,
        None,
    ));
    let (cw, ch) = (w as f32 * SCALE, h as f32 * SCALE);
    let x0 = LEFT + LABEL_WIDTH + cw / 2.0;

    if entry.kind != "tileset" && !entry.animations.is_empty() {
        // One row (one entity) per animation.
        for (anim, &(first, last, fps)) in &entry.animations {
            let (first, last) = (first as usize, last as usize);
            if first > last || last >= cells {
                warn!(
                    "{}: animation {anim} [{first}, {last}] is outside 0..{cells}",
                    entry.name
                );
                continue;
            }
            let label = format!("{}\n{anim}: {first}..={last} @ {fps} fps", entry.name);
            spawn_label(commands, label, Vec2::new(LEFT, y - ch / 2.0));
            let animation =
                (fps.is_finite() && fps > 0.0 && last > first).then(|| FrameAnimation {
                    first,
                    last,
                    timer: Timer::from_seconds(1.0 / fps.clamp(0.01, 1000.0), TimerMode::Repeating),
                });
            spawn_cell(
                commands,
                &texture,
                &layout,
                first,
                Vec2::new(x0, y - ch / 2.0),
                animation,
            );
            y -= ch + GAP;
        }
    } else {
        // Sprites, tilesets and sheets without animations: every cell (tile) as its own entity, in the grid.
        let count = match &entry.tiles {
            Some(tiles) if entry.kind == "tileset" => (tiles.count as usize).min(cells),
            _ => cells,
        };
        let columns = entry.columns as usize;
        let tile_gap = 2.0;
        spawn_label(
            commands,
            format!("{}\n{} ({count})", entry.name, entry.kind),
            Vec2::new(LEFT, y - ch / 2.0),
        );
        for index in 0..count {
            let (col, row) = ((index % columns) as f32, (index / columns) as f32);
            let center = Vec2::new(
                x0 + col * (cw + tile_gap),
                y - ch / 2.0 - row * (ch + tile_gap),
            );
            spawn_cell(commands, &texture, &layout, index, center, None);
        }
        let rows_used = count.div_ceil(columns) as f32;
        y -= rows_used * (ch + tile_gap) - tile_gap + GAP;
    }
    Ok(y - GAP)
}

fn spawn_cell(
    commands: &mut Commands,
    texture: &Handle<Image>,
    layout: &Handle<TextureAtlasLayout>,
    index: usize,
    center: Vec2,
    animation: Option<FrameAnimation>,
) {
    let sprite = Sprite::from_atlas_image(
        texture.clone(),
        TextureAtlas {
            layout: layout.clone(),
            index,
        },
    );
    let transform = Transform::from_translation(center.extend(0.0)).with_scale(Vec3::splat(SCALE));
    let mut cell = commands.spawn((Shown, sprite, transform));
    if let Some(animation) = animation {
        cell.insert(animation);
    }
}

fn spawn_label(commands: &mut Commands, text: impl Into<String>, left_center: Vec2) {
    commands.spawn((
        Shown,
        Text2d::new(text),
        TextFont {
            font_size: 14.0,
            ..default()
        },
        TextColor(Color::srgb(0.85, 0.85, 0.85)),
        Anchor::CenterLeft,
        Transform::from_translation(left_center.extend(1.0)),
    ));
}

fn animate(time: Res<Time>, mut query: Query<(&mut FrameAnimation, &mut Sprite)>) {
    for (mut animation, mut sprite) in &mut query {
        animation.timer.tick(time.delta());
        let steps = animation.timer.times_finished_this_tick() as usize;
        if steps == 0 {
            continue;
        }
        let (first, last) = (animation.first, animation.last);
        if let Some(atlas) = &mut sprite.texture_atlas {
            let len = last - first + 1;
            let offset = atlas.index.saturating_sub(first) % len;
            atlas.index = first + (offset + steps) % len;
        }
    }
}

fn pan_camera(
    keys: Res<ButtonInput<KeyCode>>,
    time: Res<Time>,
    mut camera: Query<&mut Transform, With<Camera2d>>,
) {
    let Ok(mut transform) = camera.single_mut() else {
        return;
    };
    let mut dir = Vec2::ZERO;
    for (a, b, step) in [
        (KeyCode::ArrowLeft, KeyCode::KeyA, Vec2::new(-1.0, 0.0)),
        (KeyCode::ArrowRight, KeyCode::KeyD, Vec2::new(1.0, 0.0)),
        (KeyCode::ArrowUp, KeyCode::KeyW, Vec2::new(0.0, 1.0)),
        (KeyCode::ArrowDown, KeyCode::KeyS, Vec2::new(0.0, -1.0)),
    ] {
        if keys.any_pressed([a, b]) {
            dir += step;
        }
    }
    if dir != Vec2::ZERO {
        transform.translation += (dir * 600.0 * time.delta_secs()).extend(0.0);
    }
}
