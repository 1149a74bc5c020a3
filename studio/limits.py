"""Every limit a person or a client can run into, in one table.

Why one module: the UI's sliders, the CLI's checks, the REST validation and the MCP tool schemas all read
these numbers, so a value refused in one front end is refused in every other with the same words, and a
limit is raised in one place. It imports nothing, so every room (the pure-numpy pixel engine included) may
use it. A studio's operator can set lower caps for jobs in `studio.toml` (`max_side`, `max_count`); those are
checked against these hard limits at start.
"""

# -- a generation job ---------------------------------------------------------------------------------------
MAX_PROMPT_CHARS = 4000
MIN_RENDER_SIDE = 64  # SDXL render width/height, px (multiples of 8)
MAX_RENDER_SIDE = 4096
MAX_STEPS = 150
MAX_COUNT = 64  # images in one job (the operator's default cap is lower: Settings.max_count)
MAX_GUIDANCE = 30.0
MAX_LORA_WEIGHT = 4.0  # |weight|
MAX_LORAS = 8  # LoRAs stacked on one job
MAX_SEED = 2**32 - 1
MIN_STRENGTH, MAX_STRENGTH = 0.05, 0.95  # img2img: close .. far from the start image

# -- sprites, sheets, tiles ---------------------------------------------------------------------------------
MAX_SPRITE_SIDE = 1024  # a native sprite; above this it is not pixel art
MAX_CELL_PX = 4096.0  # a forced cell size (input px per art pixel)
MIN_FRAME_SIDE, MAX_FRAME_SIDE = 4, 512  # one animation frame, native px
MIN_FRAMES, MAX_FRAMES = 2, 8  # frames in one generated animation
MIN_FPS, MAX_FPS = 1.0, 50.0  # a GIF cannot show frames faster
MIN_TILE_SIDE, MAX_TILE_SIDE = 4, 256
MAX_TILE_VARIANTS = 16
MAX_ITEMS = 32  # prompts in one item batch
MIN_COLORS, MAX_COLORS = 2, 256  # palette size
MAX_PREVIEW_SCALE = 64  # nearest-neighbour preview enlargement
MAX_PREVIEW_SIDE = 8192  # ... and the preview's longest side, px

# -- images read from anywhere (uploads, files, zips, base64) ------------------------------------------------
MAX_IMAGE_PIXELS = 4096 * 4096  # pixels of one image (the largest render); more is refused from the header
MAX_UPLOAD_BYTES = 32 * 2**20  # one uploaded or base64 image
MAX_IMPORT_FILE_BYTES = 64 * 2**20  # one file imported into a dataset
MAX_ZIP_BYTES = 2**30  # all entries of one zip, uncompressed
MAX_ZIP_ENTRIES = 20_000
MAX_IMPORT_FRAMES = 256  # frames taken from one animated file
MAX_IMPORT_SIDE = 16384  # a dataset image larger than this is refused from its header

# -- Compare ------------------------------------------------------------------------------------------------
MAX_CONTENDERS = 4  # in one battle
MIN_SWEEP_VALUES, MAX_SWEEP_VALUES = 2, 12

# -- Bevy export --------------------------------------------------------------------------------------------
MAX_FRAMES_PER_ANIMATION = 64
MAX_SHEET_SIDE = 4096
MAX_TILES = 4096
MAX_EXPORT_FPS = 120.0
