"""Key images: each segment outlined on its source image, drawn with matplotlib (Agg).

One picture per segment, four panels side by side, on black as a reading
room shows images:

* the whole acquired slice through the segment's largest cross-section, a
  frame marking the zoomed region (where the lesion is);
* that slice zoomed on the segment, the segment's outline in its color;
* the two orthogonal planes, each through the segment's largest cross-section
  in that plane, zoomed the same (same millimetres per pixel in all three).

Planes are planes of the voxel grid (no resampling: every pixel shown is a
voxel of the source series), named axial, coronal or sagittal by their
normal and turned to the radiological convention (patient right on the
image's left; anterior, superior at the top), with orientation letters at the
edges.  Pixels are drawn at their true physical aspect; a scale bar in
millimetres sits at the lower right of each zoomed panel.  The window is the
one the source image recommends (Window Center/Width), else a modality
default for CT (soft tissue) or the 1st-99th percentile of the slice.  A
caption names the segment and its summary measurements, as read from the SR.

The same pixels go into the page (PNG) and into the DICOM Secondary Capture
(:mod:`.dicomsc`), so a PACS shows what the page shows.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..measurements.geometry import Footprint, footprints, longAxisSlice
from ..model import Geometry, ImageLine, Segmentation, SourceImage, Volume
from .gather import Lesion, ReadReport
from .values import findMeasurement, formatValue, shortName, summary

FIGURE_SIZE_IN = (11.0, 3.3)
DPI = 100
ZOOM_MINIMUM_MM = 40.0
ZOOM_FACTOR = 2.2  # zoomed field of view: this many times the segment's largest extent
CT_DEFAULT_WINDOW = (40.0, 400.0)  # soft tissue (center, width) in HU
BACKGROUND = "black"
TEXT_COLOR = "#e8e8e8"
FRAME_COLOR = "#ffd400"
#: The long and short axis on the key image (keys of the measurement registry), RECIST style.
AXIS_COLORS = {"long_axis_mm": "#00d5ff", "short_axis_mm": "#ff8a00"}
NICE_LENGTHS_MM = (1, 2, 5, 10, 20, 50, 100, 200)
#: Fonts tried after matplotlib's DejaVu Sans for characters it lacks (labels in Chinese, Japanese,
#: Korean ...), those installed on this machine; matplotlib falls back through the list per glyph.
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Droid Sans Fallback", "Microsoft YaHei", "Yu Gothic",
                  "Malgun Gothic", "Apple SD Gothic Neo", "Hiragino Sans", "Arial Unicode MS")

# Radiological convention: (LPS direction to the image's right, LPS direction downwards) per plane.
_CONVENTIONS = {
    "axial": (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),
    "coronal": (np.array([1.0, 0, 0]), np.array([0, 0, -1.0])),
    "sagittal": (np.array([0, 1.0, 0]), np.array([0, 0, -1.0])),
}
_PLANE_BY_NORMAL = ("sagittal", "coronal", "axial")  # normal mostly along L, P or S
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative, positive) LPS axis ends
_PATIENT_ORIENTATION = {"R": "R", "L": "L", "A": "A", "P": "P", "S": "H", "I": "F"}  # as DICOM writes them


@dataclass(frozen=True)
class Window:
    """The display window: center and width in the image's values, and where it came from."""

    center: float
    width: float
    origin: str  # "image header", "CT soft tissue" or "1-99 % of the slice"

    @property
    def limits(self) -> tuple[float, float]:
        return self.center - self.width / 2, self.center + self.width / 2


@dataclass(frozen=True)
class KeyImage:
    """The key image of one segment.

    ``rgb`` is the picture (rows, columns, 3) as 8-bit sRGB and ``png`` the
    same pixels as PNG.  ``slice_index`` is the source slice of the largest
    cross-section and ``source_image`` the image behind it; ``planes`` names
    the zoomed panels in order (the acquired plane first), and ``orientation``
    gives the patient directions of the key panels' rows and columns as
    DICOM Patient Orientation letters (PS3.3 C.7.6.1.1.1: ``("L", "P")`` for
    axial slices in the radiological convention).
    """

    segment_number: int
    rgb: np.ndarray
    png: bytes
    slice_index: int
    source_image: SourceImage
    planes: tuple[str, ...]
    orientation: tuple[str, str]
    window: Window
    field_of_view_mm: float
    description: str


def displayWindow(volume: Volume, k: int) -> Window:
    """The window of slice ``k``: the image's own, else a CT default, else the 1st-99th percentile."""
    header = _headerOf(volume, k)
    if header is not None and "WindowCenter" in header and "WindowWidth" in header:
        center, width = (_firstValue(header.WindowCenter), _firstValue(header.WindowWidth))
        if center is not None and width is not None and width > 0:
            return Window(center, width, "image header")
    if volume.modality.upper() == "CT":
        return Window(*CT_DEFAULT_WINDOW, "CT soft tissue")
    low, high = (float(value) for value in np.percentile(volume.array[k], (1, 99)))
    return Window((low + high) / 2, max(high - low, 1e-6), "1-99 % of the slice")


def renderKeyImages(report: ReadReport) -> dict[int, KeyImage]:
    """The key image of every non-empty segment of the report, by segment number (empty without images)."""
    if report.volume is None or report.segmentation is None:
        return {}
    import matplotlib

    volume, segmentation = report.volume, report.segmentation
    with matplotlib.rc_context({"font.family": fontFamilies()}):
        return _renderAll(report.lesions, volume, segmentation)


def fontFamilies() -> list[str]:
    """DejaVu Sans, then the installed :data:`FALLBACK_FONTS` (the ``font.family`` to draw file text with)."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(name for name in FALLBACK_FONTS if name in installed)]


def _renderAll(lesions, volume: Volume, segmentation: Segmentation) -> dict[int, KeyImage]:
    sheet = _Sheet()
    extents = footprints(segmentation)
    placements = {segment.number: placement
                  for segment, placement in zip(segmentation.segments, segmentation.placement, strict=True)}
    images = {}
    for lesion in lesions:
        number = lesion.segment_number
        footprint = extents.get(number) if number is not None else None
        box = footprint.box if footprint is not None else None
        if number is None or footprint is None or box is None:
            continue  # no segment, or an empty one: nothing to show
        layer_index, value = placements[number]
        images[number] = _render(sheet, volume, segmentation.layers[layer_index][box] == value, box, footprint,
                                 lesion, number)
        sheet.clear()
    return images


# -- one picture ---------------------------------------------------------------------------------


class _Sheet:
    """The figure and its four panels, made once and cleared between segments.

    Making axes (with their tick machinery) costs more than drawing a
    segment's images, so the panels are kept and only what was drawn on
    them is removed.
    """

    MARGIN, GAP, TOP = 0.006, 0.006, 0.14

    def __init__(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI, facecolor=BACKGROUND)
        self.canvas = FigureCanvasAgg(self.figure)
        width = (1 - 2 * self.MARGIN - 3 * self.GAP) / 4
        self.axes = [self.figure.add_axes((self.MARGIN + n * (width + self.GAP), 0.02, width, 1 - self.TOP - 0.02))
                     for n in range(4)]
        for ax in self.axes:
            ax.set_facecolor(BACKGROUND)
            ax.set_axis_off()

    def clear(self) -> None:
        for ax in self.axes:
            for artist in [*ax.images, *ax.lines, *ax.patches, *ax.texts, *ax.artists, *ax.collections]:
                artist.remove()
        for text in list(self.figure.texts):
            text.remove()

    def rasterize(self) -> np.ndarray:
        self.canvas.draw()
        return np.array(self.canvas.buffer_rgba())[..., :3]


@dataclass(frozen=True)
class _Plane:
    """A plane of the grid through index ``index`` of ``axis``, turned for display.

    ``pixels`` and ``mask`` are (rows, columns) as displayed; ``spacing`` is
    (row, column) in mm; ``position`` maps an (i, j, k) index to its
    (row, column) position on the display.
    """

    name: str
    pixels: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float]
    right: np.ndarray  # LPS direction of the display's +column
    down: np.ndarray  # LPS direction of the display's +row
    transposed: bool
    flips: tuple[bool, bool]
    in_plane_axes: tuple[int, int]  # (row axis, column axis) of the (k, j, i) array before turning

    def displayed(self, row_index: float, column_index: float) -> tuple[float, float]:
        """(row, column) on the display of the (row axis, column axis) array indices."""
        rows, columns = self.pixels.shape
        if self.transposed:
            row_index, column_index = column_index, row_index
        if self.flips[0]:
            row_index = rows - 1 - row_index
        if self.flips[1]:
            column_index = columns - 1 - column_index
        return row_index, column_index


def _planeName(geometry: Geometry, axis: int) -> str:
    """axial, coronal or sagittal: the plane perpendicular to array axis ``axis`` (0 = k, 1 = j, 2 = i)."""
    directions = geometry.directions  # columns: i, j, k
    in_plane = [directions[:, 2 - a] for a in range(3) if a != axis]
    normal = np.cross(in_plane[0], in_plane[1])
    return _PLANE_BY_NORMAL[int(np.argmax(np.abs(normal)))]


def _plane(volume: Volume, mask: np.ndarray, box: tuple[slice, slice, slice], axis: int, index: int) -> _Plane:
    """The plane ``index`` along ``axis``; ``mask`` is the segment within its bounding box ``box``."""
    geometry = volume.geometry
    name = _planeName(geometry, axis)
    pixels = np.take(volume.array, index, axis=axis)
    plane_mask = np.zeros(pixels.shape, dtype=bool)
    in_plane = tuple(box[a] for a in range(3) if a != axis)
    plane_mask[in_plane] = np.take(mask, index - box[axis].start, axis=axis)
    row_axis, column_axis = (a for a in range(3) if a != axis)
    directions, spacing = geometry.directions, geometry.spacing  # indexed by i, j, k = 2 - array axis
    row_direction, column_direction = directions[:, 2 - row_axis], directions[:, 2 - column_axis]
    row_spacing, column_spacing = spacing[2 - row_axis], spacing[2 - column_axis]
    want_right, want_down = _CONVENTIONS[name]
    transposed = abs(np.dot(row_direction, want_right)) > abs(np.dot(column_direction, want_right))
    if transposed:
        pixels, plane_mask = pixels.T, plane_mask.T
        row_direction, column_direction = column_direction, row_direction
        row_spacing, column_spacing = column_spacing, row_spacing
    flip_rows = bool(np.dot(row_direction, want_down) < 0)
    flip_columns = bool(np.dot(column_direction, want_right) < 0)
    if flip_rows:
        pixels, plane_mask, row_direction = pixels[::-1], plane_mask[::-1], -row_direction
    if flip_columns:
        pixels, plane_mask, column_direction = pixels[:, ::-1], plane_mask[:, ::-1], -column_direction
    return _Plane(name, pixels, plane_mask, (float(row_spacing), float(column_spacing)), column_direction,
                  row_direction, transposed, (flip_rows, flip_columns), (row_axis, column_axis))


def _render(sheet: _Sheet, volume: Volume, mask: np.ndarray, box: tuple[slice, slice, slice], footprint: Footprint,
            lesion: Lesion, number: int) -> KeyImage:
    """The key image of a non-empty segment; ``mask`` is the segment within its bounding box ``box``."""
    # A non-empty segment has a largest cross-section along every axis.
    # The slices of the largest cross-sections, by the rule the long and short axis are measured on.
    k, j, i = (longAxisSlice(areas) for areas in footprint.areas)
    window = displayWindow(volume, k)
    color = _color(lesion)
    low = np.array([extent.start for extent in box])
    high = np.array([extent.stop - 1 for extent in box])
    spacing_kji = volume.geometry.spacing[::-1]
    extent_mm = float(np.max((high - low + 1) * spacing_kji))
    field_mm = max(ZOOM_MINIMUM_MM, ZOOM_FACTOR * extent_mm)
    centre = (low + high) / 2.0

    key = _plane(volume, mask, box, 0, k)
    orthogonal = [_plane(volume, mask, box, 1, j), _plane(volume, mask, box, 2, i)]
    zoomed = [key, *orthogonal]

    # The overview, then the three zoomed planes; a caption line on top.
    axes, figure, margin = sheet.axes, sheet.figure, sheet.MARGIN
    _drawOverview(axes[0], key, centre, field_mm, window, color)
    for ax, plane in zip(axes[1:], zoomed, strict=True):
        _drawZoomed(ax, plane, centre, field_mm, window, color, marker_k=k if plane is not key else None)
    corner: dict[str, Any] = {"color": TEXT_COLOR, "fontsize": 8, "transform": axes[1].transAxes,
                              "path_effects": _outlined()}
    axes[1].text(0.02, 0.98, f"slice {k + 1}/{volume.geometry.shape[0]}", ha="left", va="top", **corner)
    axes[1].text(0.02, 0.02, f"W {window.width:g} L {window.center:g}", ha="left", va="bottom", **corner)
    drawn = _drawAxes(axes[1], key, volume.source_images[k], lesion)

    caption = "    ".join(f"{name} {value}" for name, value in summary(lesion.measurements))
    # Text from the files is drawn as it is: no mathtext ("$...$" in a label is not a formula).
    figure.text(margin, 0.975, lesion.label, color=TEXT_COLOR, fontsize=12, fontweight="bold", va="top",
                ha="left", parse_math=False)
    figure.text(1 - margin, 0.975, caption, color=TEXT_COLOR, fontsize=10, va="top", ha="right", parse_math=False)

    rgb = sheet.rasterize()
    png = _png(rgb)
    planes = tuple(plane.name for plane in zoomed)
    description = (f"{lesion.label}: {planes[0]} slice {k + 1} of {volume.geometry.shape[0]} (largest cross-section)"
                   f" and {planes[1]} and {planes[2]} planes, outline of the segment"
                   f"{', ' + ' and '.join(drawn) + ' as measured' if drawn else ''}, field of view {field_mm:.0f} mm")
    orientation = (_PATIENT_ORIENTATION[_letter(key.right)[1]], _PATIENT_ORIENTATION[_letter(key.down)[1]])
    return KeyImage(number, rgb, png, k, volume.source_images[k], planes, orientation, window,
                    field_mm, description)


def _drawAxes(ax, plane: _Plane, image: SourceImage, lesion: Lesion) -> list[str]:
    """The long and short axis on the key panel, RECIST style, where the SR says they were measured.

    Drawn from the SR's lines (:attr:`~QuantReportLib.model.Measurement.line`)
    when they lie on the key slice's image, each with a legend entry giving
    its length as the SR states it.  Returns the names of the axes drawn.
    """
    drawn: list[str] = []
    row_spacing, column_spacing = plane.spacing
    for key, color in AXIS_COLORS.items():
        measurement = findMeasurement(lesion.measurements, key)
        line = measurement.line if measurement is not None else None
        if measurement is None or line is None or not _onImage(line, image):
            continue
        # Image point (column, row) is voxel (i, j) = (column - 0.5, row - 0.5) of the key slice.
        ends = [plane.displayed(row - 0.5, column - 0.5) for column, row in line.points]
        xs = [column * column_spacing for _, column in ends]
        ys = [row * row_spacing for row, _ in ends]
        ax.plot(xs, ys, color=color, linewidth=1.6, solid_capstyle="butt", marker="|", markersize=7,
                markeredgewidth=1.6, path_effects=_outlined(3.2))
        name = shortName(measurement.quantity)
        ax.text(0.98, 0.91 - 0.07 * len(drawn), f"{name} {formatValue(measurement.value)} mm", color=color,
                fontsize=8, ha="right", va="top", transform=ax.transAxes, path_effects=_outlined())
        drawn.append(name.lower())
    return drawn


def _onImage(line: ImageLine, image: SourceImage) -> bool:
    return line.sop_instance_uid == image.sop_instance_uid and (
        line.frame_number is None or line.frame_number == image.frame_number)


def _drawOverview(ax, plane: _Plane, centre: np.ndarray, field_mm: float, window: Window, color) -> None:
    from matplotlib.patches import Rectangle

    rows, columns = plane.pixels.shape
    row_spacing, column_spacing = plane.spacing
    ax.imshow(plane.pixels, cmap="gray", vmin=window.limits[0], vmax=window.limits[1], interpolation="antialiased",
              extent=(0, columns * column_spacing, rows * row_spacing, 0))
    row, column = plane.displayed(centre[plane.in_plane_axes[0]], centre[plane.in_plane_axes[1]])
    y, x = (row + 0.5) * row_spacing, (column + 0.5) * column_spacing
    ax.add_patch(Rectangle((x - field_mm / 2, y - field_mm / 2), field_mm, field_mm, fill=False,
                           edgecolor=FRAME_COLOR, linewidth=1.2))
    ax.set_xlim(0, columns * column_spacing)
    ax.set_ylim(rows * row_spacing, 0)
    ax.set_aspect("equal")
    ax.set_title(f"{plane.name.capitalize()} overview", color=TEXT_COLOR, fontsize=9, pad=3)
    _orientationLetters(ax, plane)


def _drawZoomed(ax, plane: _Plane, centre: np.ndarray, field_mm: float, window: Window, color,
                marker_k: int | None) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    row_spacing, column_spacing = plane.spacing
    rows, columns = plane.pixels.shape
    row, column = plane.displayed(centre[plane.in_plane_axes[0]], centre[plane.in_plane_axes[1]])
    # Only the voxels in view (plus one) are drawn: the rest would be resampled for nothing.
    half_rows, half_columns = field_mm / 2 / row_spacing + 1, field_mm / 2 / column_spacing + 1
    r0, r1 = max(0, int(row - half_rows)), min(rows, int(np.ceil(row + half_rows)) + 1)
    c0, c1 = max(0, int(column - half_columns)), min(columns, int(np.ceil(column + half_columns)) + 1)
    pixels, mask = plane.pixels[r0:r1, c0:c1], plane.mask[r0:r1, c0:c1]
    extent = ((c0 - 0.5) * column_spacing, (c1 - 0.5) * column_spacing, (r1 - 0.5) * row_spacing,
              (r0 - 0.5) * row_spacing)
    ax.imshow(pixels, cmap="gray", vmin=window.limits[0], vmax=window.limits[1], interpolation="bilinear",
              extent=extent)
    if mask.any():
        x = np.arange(c0, c1) * column_spacing
        y = np.arange(r0, r1) * row_spacing
        ax.contour(x, y, mask.astype(np.float32), levels=[0.5], colors=[color], linewidths=1.4)
    cx, cy = column * column_spacing, row * row_spacing
    ax.set_xlim(cx - field_mm / 2, cx + field_mm / 2)
    ax.set_ylim(cy + field_mm / 2, cy - field_mm / 2)
    ax.set_aspect("equal")
    if marker_k is not None:
        # A reference line at the level of the key slice, dashed as PACS draw them, short of the edges and
        # their orientation letters.  The k axis is this plane's row axis before turning: a row on the
        # display, or a column when the plane was transposed.
        row_at_k, column_at_k = plane.displayed(marker_k, 0)
        span = np.array([-0.42, 0.42]) * field_mm
        style = {"color": FRAME_COLOR, "linewidth": 0.9, "linestyle": (0, (4, 3)), "alpha": 0.8}
        if plane.transposed:
            ax.plot([(column_at_k) * column_spacing] * 2, cy + span, **style)
        else:
            ax.plot(cx + span, [row_at_k * row_spacing] * 2, **style)
    length = _scaleLength(field_mm)
    bar = AnchoredSizeBar(ax.transData, length, f"{length:g} mm", loc="lower right", color=TEXT_COLOR,
                          frameon=True, size_vertical=field_mm / 150, pad=0.3, borderpad=0.4, sep=2,
                          fontproperties={"size": 8})
    bar.patch.set(facecolor="black", alpha=0.55, edgecolor="none")
    ax.add_artist(bar)
    ax.set_title(plane.name.capitalize(), color=TEXT_COLOR, fontsize=9, pad=3)
    _orientationLetters(ax, plane)


def _orientationLetters(ax, plane: _Plane) -> None:
    style = {"color": FRAME_COLOR, "fontsize": 8, "transform": ax.transAxes, "fontweight": "bold",
             "path_effects": _outlined()}
    right, down = _letter(plane.right), _letter(plane.down)
    ax.text(0.985, 0.5, right[1], ha="right", va="center", **style)
    ax.text(0.015, 0.5, right[0], ha="left", va="center", **style)
    ax.text(0.5, 0.985, down[0], ha="center", va="top", **style)
    ax.text(0.5, 0.015, down[1], ha="center", va="bottom", **style)


def _outlined(width: float = 2.2) -> list:
    """A thin black outline around overlay text and lines, so that they read on bright tissue too."""
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=width, foreground="black")]


def _letter(direction: np.ndarray) -> tuple[str, str]:
    """(letter of the opposite end, letter of the end ``direction`` points to): e.g. ("R", "L")."""
    axis = int(np.argmax(np.abs(direction)))
    negative, positive = _LETTERS[axis]
    return (negative, positive) if direction[axis] > 0 else (positive, negative)


def _scaleLength(field_mm: float) -> float:
    """The longest nice length at most a quarter of the field of view."""
    fitting = [length for length in NICE_LENGTHS_MM if length <= field_mm / 4]
    return float(fitting[-1] if fitting else NICE_LENGTHS_MM[0])


def _color(lesion: Lesion) -> tuple[float, float, float]:
    """The segment's recommended display color, lightened when too dark to see on a gray image."""
    rgb = np.array(lesion.segment.color if lesion.segment.color is not None else (255, 64, 64), dtype=float) / 255
    luminance = float(np.dot(rgb, (0.2126, 0.7152, 0.0722)))
    if luminance < 0.35:
        rgb = rgb + (1 - rgb) * 0.5
    return float(rgb[0]), float(rgb[1]), float(rgb[2])


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)  # 4x faster than 6, 15 % larger
    return buffer.getvalue()


def _headerOf(volume: Volume, k: int):
    uid = volume.source_images[k].sop_instance_uid
    return next((header for header in volume.headers if str(header.get("SOPInstanceUID", "")) == uid),
                volume.headers[0] if volume.headers else None)


def _firstValue(value) -> float | None:
    values: Sequence = value if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(
        value, str) else [value]
    try:
        return float(values[0])
    except (TypeError, ValueError, IndexError):
        return None
