import pytest
import torch
from matplotlib.figure import Figure

from diffusion_lessons import NoiseSchedule, plotting, toy_2d

S = NoiseSchedule.linear(T=100)


def _titled(fig: Figure) -> bool:
    return bool(fig._suptitle and fig._suptitle.get_text()) or all(ax.get_title() for ax in fig.axes)


def test_image_grid_layout_and_labels(gen):
    images = torch.rand(10, 1, 8, 8, generator=gen) * 2 - 1
    fig = plotting.image_grid(images, ncols=4, title="ten digits", row_labels=["a", "b", "c"])
    assert isinstance(fig, Figure) and len(fig.axes) == 12  # 3 rows of 4; the last two blank
    assert sum(len(ax.images) > 0 for ax in fig.axes) == 10
    assert [fig.axes[4 * r].get_ylabel() for r in range(3)] == ["a", "b", "c"]
    rgb = plotting.image_grid(torch.rand(2, 3, 4, 4, generator=gen), title="colour")
    assert rgb.axes[0].images[0].get_array().shape == (4, 4, 3)


def test_noising_strip_columns_are_timesteps(gen):
    x0 = torch.rand(2, 1, 8, 8, generator=gen) * 2 - 1
    ts = [0, 10, 50, 99]
    fig = plotting.noising_strip(x0, S, ts, generator=gen)
    assert len(fig.axes) == 8 and _titled(fig)
    assert [ax.get_title().split("\n")[0] for ax in fig.axes[:4]] == [f"t={t}" for t in ts]
    # the same image in a row, noisier to the right: the last column is far from x0
    first, last = fig.axes[0].images[0].get_array(), fig.axes[3].images[0].get_array()
    clean = (x0[0, 0].numpy() + 1) / 2
    assert abs(first - clean).mean() < abs(last - clean).mean()
    assert len(plotting.noising_strip(x0[0], S, ts).axes) == 4  # one (C, H, W) image


def test_noising_clouds_and_histograms(gen):
    fig = plotting.noising_clouds(toy_2d("moons", n=200), S, [0, 50, 99], generator=gen)
    assert len(fig.axes) == 3 and _titled(fig)
    assert fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
    fig = plotting.compare_histograms({"a": torch.randn(100), "b": torch.randn(100)}, "two", normal=(0.0, 1.0))
    ax = fig.axes[0]
    assert ax.get_title() == "two" and ax.get_xlabel() and ax.get_ylabel() == "density"
    assert len(ax.get_legend().get_texts()) == 3


def test_cloud_panels_one_panel_per_cloud(gen):
    clouds = {"data": toy_2d("moons", n=100), "noised": torch.randn(100, 2, generator=gen)}
    fig = plotting.cloud_panels(clouds, "two clouds", ring=False)
    assert [ax.get_title() for ax in fig.axes] == ["data", "noised"] and fig._suptitle.get_text() == "two clouds"
    assert all(len(ax.collections) == 1 and not ax.lines for ax in fig.axes)
    assert len(plotting.cloud_panels(clouds, "ringed").axes[0].lines) == 1
    with pytest.raises(ValueError, match=r"each cloud must have shape \(N, 2\), got \(100, 3\) for 'bad'"):
        plotting.cloud_panels({"bad": torch.zeros(100, 3)}, "x")


def test_arrow_panels_point_towards_the_ends_coloured_by_distance(gen):
    starts = torch.randn(30, 2, generator=gen)
    ends = {"towards 0": torch.zeros(30, 2), "shifted": starts + torch.tensor([0.5, 0.0])}
    data = toy_2d("moons", n=100)
    fig = plotting.arrow_panels(starts, ends, "two fields", data=data, lim=3.0, length=0.2, label="distance")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["towards 0", "shifted"] and fig._suptitle.get_text() == "two fields"
    assert len(fig.axes) == 3 and fig.axes[2].get_ylabel() == "distance"  # two panels and the colour bar
    for ax, end in zip(panels, ends.values(), strict=True):
        cloud, arrows = ax.collections  # the data first, so the arrows are drawn over it
        assert len(cloud.get_offsets()) == 100 and arrows.get_zorder() > cloud.get_zorder()
        uv = torch.tensor(list(zip(arrows.U, arrows.V, strict=True)))
        assert torch.allclose(uv.norm(dim=1), torch.full((30,), 0.2, dtype=uv.dtype))  # one length for all
        direction = (end - starts).double()
        assert (torch.nn.functional.cosine_similarity(uv, direction, dim=1) > 0.999).all()
        assert torch.allclose(torch.as_tensor(arrows.get_array()), direction.norm(dim=1))  # colour = distance
    assert panels[0].get_xlim() == (-3.0, 3.0) and panels[0].get_ylabel()
    bare = plotting.arrow_panels(starts, {"a": ends["shifted"]}, "no data")
    assert len(bare.axes[0].collections) == 1
    with pytest.raises(ValueError, match=r"starts must have shape \(N, 2\), got \(30, 3\)"):
        plotting.arrow_panels(torch.zeros(30, 3), ends, "x")
    with pytest.raises(ValueError, match=r"shape of starts, \(30, 2\); got \(29, 2\) for 'bad'"):
        plotting.arrow_panels(starts, {"bad": torch.zeros(29, 2)}, "x")
    with pytest.raises(ValueError, match="ends must hold at least one entry"):
        plotting.arrow_panels(starts, {}, "x")


def test_schedule_curves_one_line_per_schedule():
    fig = plotting.schedule_curves([NoiseSchedule.linear(), NoiseSchedule.cosine(T=500)], relative=True)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert len(ax.lines) == 2 and ax.get_title() and ax.get_ylabel() and ax.get_xlabel() == "t / T"
    assert fig.axes[0].get_yscale() == "log"
    fig = plotting.schedule_curves({"mine": S}, curves=["alpha_bars"])
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "mine"


def test_bad_input():
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1 or 3, H, W\)"):
        plotting.image_grid(torch.zeros(4, 2, 8, 8))
    with pytest.raises(ValueError, match=r"points must have shape \(N, 2\)"):
        plotting.noising_clouds(torch.zeros(5, 3), S, [0])
    with pytest.raises(ValueError, match="curves must be chosen from"):
        plotting.schedule_curves([S], curves=["sigma"])


def test_a_figure_as_a_cells_value_displays_as_png_without_magics():
    """Lessons rely on it: no %matplotlib inline, the Figure is shown exactly once, as a PNG."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cell = "import torch\nfrom diffusion_lessons import plotting\n" "plotting.image_grid(torch.zeros(2, 1, 4, 4))"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert len(outputs) == 1 and "image/png" in outputs[0]["data"], outputs
