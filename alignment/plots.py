"""Figures a reader looks at: the two depth maps and their difference."""
import numpy as np


def depth_maps(torch_depth, paddle_depth, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t, p = np.asarray(torch_depth)[:, 0], np.asarray(paddle_depth)[:, 0]
    fig, axes = plt.subplots(len(t), 3, figsize=(12, 2.2 * len(t)), squeeze=False)
    for i in range(len(t)):
        for ax, img, name, cmap in ((axes[i, 0], t[i], "torch_ref", "magma"), (axes[i, 1], p[i], "paddle_bts", "magma"),
                                    (axes[i, 2], np.abs(t[i] - p[i]), "|difference| (m)", "viridis")):
            shown = ax.imshow(img, cmap=cmap)
            ax.set_title(f"{name} [{i}]", fontsize=9)
            ax.axis("off")
            fig.colorbar(shown, ax=ax, fraction=0.025)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
