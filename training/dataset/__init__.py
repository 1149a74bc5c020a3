"""Pixel-art LoRA training sets: import, check, caption and prepare images for SDXL.

Why a package: the four concerns change for different reasons and are read by different people, so each
has its own module; this file only gathers their public names, so `from training.dataset import X` and
`training.dataset.X` keep working for the studio, the tabs and the tests.
- `records`: names, metadata, ImageRecord, the Dataset folder handle and import (files, folders, zips);
- `checks`: image checks (native sprite, problems, colour count, hashes, duplicates, set warnings);
- `captions`: bulk caption edits, auto-captioning, undo, tag counts;
- `prepare`: SDXL buckets, bucket-sized training images, kohya and diffusers exports.
Imports go one way only: checks <- records <- captions, prepare.
"""

from training.dataset.captions import (
    UNDO_FILE,
    auto_caption,
    caption_append,
    caption_ensure_trigger,
    caption_find_replace,
    caption_prepend,
    caption_replace_all,
    tag_frequencies,
    undo_last,
)
from training.dataset.checks import (
    CELL_NOISE_MAX,
    GRID_CONTRAST_MIN,
    MAX_INPUT_SIDE,
    MAX_NATIVE_SIDE,
    MIN_NATIVE_SIDE,
    MOSTLY_EMPTY,
    NEAR_DUPLICATE_BITS,
    RECON_ERROR_MAX,
    DatasetError,
    DuplicateGroup,
    check_image,
    dataset_warnings,
    detect_native,
    find_duplicates,
    hamming,
    phash,
    pixel_sha256,
)
from training.dataset.prepare import (
    SDXL_BUCKETS,
    Background,
    Prepared,
    PreparedItem,
    PrepareReport,
    choose_bucket,
    export_diffusers,
    export_kohya,
    prepare,
    prepare_image,
    preview_prepared,
)
from training.dataset.records import (
    IMPORT_EXTENSIONS,
    INDEX_FILE,
    META_FILE,
    NAME_RE,
    Dataset,
    DatasetMeta,
    ImageRecord,
    ImportReport,
    Progress,
    Skipped,
    check_name,
    list_datasets,
    problem_code,
    slug,
)

__all__ = [
    "CELL_NOISE_MAX", "GRID_CONTRAST_MIN", "IMPORT_EXTENSIONS", "INDEX_FILE", "MAX_FRAMES",
    "MAX_INPUT_SIDE", "MAX_NATIVE_SIDE", "META_FILE",
    "MIN_NATIVE_SIDE", "MOSTLY_EMPTY", "NAME_RE", "NEAR_DUPLICATE_BITS", "RECON_ERROR_MAX", "SDXL_BUCKETS",
    "UNDO_FILE",
    "Background", "Dataset", "DatasetError", "DatasetMeta", "DuplicateGroup", "ImageRecord", "ImportReport",
    "PrepareReport", "Prepared", "PreparedItem", "Progress", "Skipped",
    "auto_caption", "caption_append", "caption_ensure_trigger", "caption_find_replace", "caption_prepend",
    "caption_replace_all", "check_image", "check_name", "choose_bucket", "dataset_warnings", "detect_native",
    "export_diffusers", "export_kohya", "find_duplicates", "hamming", "list_datasets", "phash",
    "pixel_sha256", "prepare", "prepare_image", "preview_prepared", "problem_code", "slug",
    "tag_frequencies", "undo_last",
]
