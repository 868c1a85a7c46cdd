"""mip-NeRF 360 (Barron et al. 2022) for the NeRF family: contracted conical frustums, proposal
MLPs, the interlevel and distortion losses.

What runs inside jit. Params: {"nerf": the NeRF MLP, "proposals": one MLP per proposal level},
all in the "mlp" optimizer group. The scene must be contracted (--data.contraction); rays carry
their pixels' cone radii (Rays.radii). Sampling is tensorf.intervals' (the same as TensoRF's
proposals): bins in normalised distance, linear to the unit region's exit and then even in
disparity, each level drawn from the previous one's weights.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from tensorf.config import MipNeRF360Config
from tensorf.data.rays import Rays
from tensorf.data.views import Scene
from tensorf.fields.ipe import integrated_encoding, ray_frustums
from tensorf.fields.nerf_mlp import NeRFMLP, encode
from tensorf.intervals import Spacing, distortion_loss, interlevel_loss, propose, schlick_bias
from tensorf.models.nerf.mlp_model import Level, MLPModel, depth_loss
from tensorf.render import RenderOutput, composite_all, compositing_weights, contract, ray_background, unit_region_exit


def contract_gaussians(mean: jax.Array, var: jax.Array, norm: str, shell: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Gaussians (M, 3) with diagonal variance through the contraction, linearised at the mean
    (mip-NeRF 360 eq. 9): the mean contracted, the variance diag(J diag(var) J^T)."""
    jac = jax.vmap(jax.jacfwd(lambda x: contract(x, norm, shell)))(mean)  # (M, 3, 3)
    return contract(mean, norm, shell), jnp.einsum("mij,mj->mi", jac**2, var)


@dataclasses.dataclass(frozen=True)
class MipNeRF360(MLPModel):
    config: MipNeRF360Config
    scene: Scene

    def __post_init__(self):
        if not self.scene.contraction:
            raise ValueError("mip-NeRF 360 needs a contracted scene (--data.contraction linf or l2)")

    def _proposal_mlp(self) -> NeRFMLP:
        c = self.config
        return NeRFMLP(depth=c.proposal_depth, width=c.proposal_width, skip=c.skip_layer, depth_cond=1,
                       width_cond=8, dtype=jnp.dtype(c.compute_dtype))

    def init(self, key: jax.Array, state: dict | None = None) -> dict:
        c = self.config
        points = jnp.zeros((1, 6 * c.max_deg_point))
        dirs = jnp.zeros((1, 3 * (1 + 2 * c.deg_view)))
        keys = jax.random.split(key, 1 + len(c.proposal_samples))
        return {"nerf": self._mlp.init(keys[0], points, dirs),
                "proposals": tuple(self._proposal_mlp().init(k, points, dirs) for k in keys[1:])}

    # --- fields -------------------------------------------------------------------------------

    def _encode(self, mean: jax.Array, var: jax.Array) -> jax.Array:
        mean, var = contract_gaussians(mean, var, self.scene.contraction, self.scene.shell)
        return integrated_encoding(mean, var, 0, self.config.max_deg_point)

    def _shade(self, net_params, mlp: NeRFMLP, mean, var, viewdirs) -> tuple[jax.Array, jax.Array]:
        """Density (M,) and RGB (M, 3) of world-space Gaussians (M, 3) seen along (M, 3)."""
        c = self.config
        raw, rgb = mlp.apply(net_params, self._encode(mean, var), encode(viewdirs, c.deg_view))
        return jax.nn.softplus(raw + c.density_bias), rgb * (1.0 + 2.0 * c.rgb_padding) - c.rgb_padding

    def density(self, params: dict, xyz: jax.Array) -> jax.Array:
        return self._shade(params["nerf"], self._mlp, xyz, jnp.zeros_like(xyz), jnp.zeros_like(xyz))[0]

    def color(self, params: dict, xyz: jax.Array, viewdirs: jax.Array) -> jax.Array:
        return self._shade(params["nerf"], self._mlp, xyz, jnp.zeros_like(xyz), viewdirs)[1]

    # --- rendering ----------------------------------------------------------------------------

    def _intervals(self, net_params, mlp: NeRFMLP, rays: Rays, t_edges: jax.Array):
        """Density (B, N) and RGB (B, N, 3) of the frustums between t_edges (B, N + 1)."""
        b, n = t_edges.shape[0], t_edges.shape[1] - 1
        sigma, rgb = self._shade(net_params, mlp, *ray_frustums(rays, t_edges[:, :-1], t_edges[:, 1:]))
        return sigma.reshape(b, n), rgb.reshape(b, n, 3)

    def _render(self, params: dict, rays: Rays, keys, anneal) -> tuple[Level, dict]:
        """The NeRF MLP's level, and the proposals' {"edges": its normalised bin edges,
        "history": each proposal level's edges and weights}."""
        c = self.config
        b = rays.origins.shape[0]
        near, far = self.scene.near_far
        spacing = Spacing.disparity_beyond(near, far, unit_region_exit(rays, self.scene.contraction))
        levels = len(c.proposal_samples)
        jitter = None if keys is None else jax.vmap(lambda k: jax.random.uniform(k, (levels + 1,)))(keys)

        def weights_of(level: int, edges: jax.Array) -> jax.Array:
            t_edges = spacing.t(edges)
            sigma, _ = self._intervals(params["proposals"][level], self._proposal_mlp(), rays, t_edges)
            return compositing_weights(sigma, t_edges[:, 1:] - t_edges[:, :-1])

        edges, history = propose(c.proposal_samples, c.samples, weights_of, jitter, anneal, batch=b)
        t_edges = spacing.t(edges)
        sigma, rgb = self._intervals(params["nerf"], self._mlp, rays, t_edges)
        mid = 0.5 * (t_edges[:, 1:] + t_edges[:, :-1])
        sigma, rgb = self._near_gradient(sigma, mid), self._near_gradient(rgb, mid[..., None])
        lengths = t_edges[:, 1:] - t_edges[:, :-1]
        weights = compositing_weights(sigma, lengths)
        out = composite_all(weights, rgb, mid, ray_background(rays, self.scene.background), rays.exposure)
        return Level(out, weights, mid, lengths), {"edges": edges, "history": history}

    def render(self, params: dict, rays: Rays, keys: jax.Array | None) -> RenderOutput:
        return self._render(params, rays, keys, 1.0)[0].out

    # --- training -----------------------------------------------------------------------------

    def training_loss(self, params: dict, rays: Rays, colors: jax.Array, keys: jax.Array, weights: dict):
        """MSE plus the interlevel and distortion losses and, with measured depths, the depth loss
        of the NeRF MLP's weights (the proposals follow them through the interlevel loss, as in
        nerfstudio's depth-nerfacto); weighted, reported unweighted."""
        c = self.config
        level, info = self._render(params, rays, keys, weights["anneal"])
        mse = jnp.mean((level.out.rgb - colors) ** 2)
        inter = interlevel_loss(info["edges"], level.weights, info["history"])
        dist = jnp.mean(distortion_loss(info["edges"], level.weights))
        loss = mse + c.interlevel_weight * inter + c.distortion_weight * dist
        aux = {"mse": mse, "dropped": jnp.zeros(()), "interlevel": inter, "distortion": dist}
        if rays.target_depth is not None and c.depth_weight:
            aux["depth"] = depth_loss(level, rays, c.depth_sigma)
            loss += c.depth_weight * aux["depth"]
        return loss, aux

    def loss_weights(self, step: jax.Array, decay: jax.Array) -> dict[str, jax.Array]:
        """The proposal resampling's anneal (mip-NeRF 360 eq. 18, slope 10)."""
        progress = jnp.clip(step / max(self.config.anneal_steps, 1), 0.0, 1.0)
        return {"anneal": schlick_bias(progress, 10.0).astype(jnp.float32)}
