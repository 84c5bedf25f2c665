"""Core's own components, registered through the same hooks a third-party plugin uses."""

from invertavatar_core.plugin.manager import hookimpl

__all__: list[str] = [
    "invertavatar_register_evaluation_protocols",
    "invertavatar_register_inverters",
    "invertavatar_register_metrics",
    "invertavatar_register_rasterizers",
]


@hookimpl
def invertavatar_register_inverters(registrar) -> None:
    """Register our inverter, the baselines of Tables 1-2 (``per_frame_mean``, ``pti``) and ``copy_source``."""
    from invertavatar_core.inversion.inverters.copy_source import CopySourceInverterConfig, build_copy_source_inverter
    from invertavatar_core.inversion.inverters.incremental import IncrementalInverterConfig, build_incremental_inverter
    from invertavatar_core.inversion.inverters.per_frame_mean import (
        PerFrameMeanInverterConfig,
        build_per_frame_mean_inverter,
    )
    from invertavatar_core.inversion.inverters.pti import PTIInverterConfig, build_pti_inverter

    registrar.add(
        "incremental",
        build_incremental_inverter,
        IncrementalInverterConfig,
        description="ours: E_latent on frame 0, (recurrent) E_tex / E_tri over all frames; one-shot without aggregator",
    )
    registrar.add(
        "per_frame_mean",
        build_per_frame_mean_inverter,
        PerFrameMeanInverterConfig,
        description="baseline Ours-OS (Table 2): one-shot inversion per frame, canonical features averaged",
    )
    registrar.add(
        "pti",
        build_pti_inverter,
        PTIInverterConfig,
        description="baseline Next3D-PTI (Tables 1-2): optimise w+, then fine-tune the prior around it",
        tiny={"w_steps": 2, "tune_steps": 2, "progress": False},
    )
    registrar.add(
        "copy_source",
        build_copy_source_inverter,
        CopySourceInverterConfig,
        description="baseline: the first source frame, unchanged, as every output (evaluation only)",
    )


@hookimpl
def invertavatar_register_evaluation_protocols(registrar) -> None:
    """Register the protocols of paper Sec. 4: Table 3's reconstruction, Table 1's reenactments, Table 2's few-shot."""
    from invertavatar_core.evaluation import protocols as p

    registrar.add(
        "reconstruction",
        p.Reconstruction,
        p.ReconstructionConfig,
        description="Table 3: first frame inverted and re-rendered as itself",
    )
    registrar.add(
        "same_identity",
        p.SameIdentity,
        p.SameIdentityConfig,
        description="Table 1 same-ID: first frame driven by the next frames of its clip, against the true frames",
    )
    registrar.add(
        "cross_identity",
        p.CrossIdentity,
        p.CrossIdentityConfig,
        description="Table 1 cross-ID: first frame of clip i driven by clip i+1; identity and motion metrics only",
    )
    registrar.add(
        "few_shot",
        p.FewShot,
        p.FewShotConfig,
        description="Table 2 / Fig. 6: K evenly sampled source frames, evaluated on the clip's last frames",
        tiny={"source_frames": [1, 2], "source_window": 2, "eval_frames": 2},
    )


@hookimpl
def invertavatar_register_metrics(registrar) -> None:
    """Register the paper's evaluation metrics (Sec. 4.1), MS-SSIM (fallback perceptual loss) and head-masked ones."""
    from invertavatar_core.evaluation import metrics as m

    registrar.add("psnr", m.PSNR, m.PSNRConfig, description="peak signal-to-noise ratio in dB, per image, capped")
    registrar.add("l1", m.L1, m.L1Config, description="mean absolute error in [0, 1] units")
    registrar.add("ssim", m.SSIM, m.SSIMConfig, description="structural similarity (kornia), 11-px Gaussian window")
    registrar.add(
        "ms_ssim",
        m.MSSSIM,
        m.MSSSIMConfig,
        description="multi-scale SSIM; 1 - MS-SSIM is the perceptual loss when LPIPS weights are absent",
        tiny={"window_size": 3},
    )
    registrar.add("lpips", m.LPIPS, m.LPIPSConfig, description="LPIPS (AlexNet), user-supplied trunk and head weights")
    registrar.add("csim", m.CSIM, m.CSIMConfig, description="ArcFace (IR-SE-50) identity cosine similarity")
    registrar.add(
        "akd",
        m.AKD,
        m.AKDConfig,
        description="average keypoint distance of MediaPipe landmarks (needs invertavatar-faceverse[mediapipe])",
    )
    registrar.add("fid", m.FID, m.FIDConfig, description="Frechet Inception distance, user-supplied Inception-v3")
    registrar.add(
        "head_psnr", m.HeadPSNR, m.HeadPSNRConfig, description="PSNR in dB over the target's head mask (synthetic data)"
    )
    registrar.add(
        "head_ms_ssim",
        m.HeadMSSSIM,
        m.HeadMSSSIMConfig,
        description="MS-SSIM with both images flat outside the target's head mask",
        tiny={"window_size": 3},
    )
    registrar.add(
        "head_lpips",
        m.HeadLPIPS,
        m.HeadLPIPSConfig,
        description="LPIPS with both images flat outside the target's head mask; user-supplied weights",
    )


@hookimpl
def invertavatar_register_rasterizers(registrar) -> None:
    """Register the pure-torch rasteriser, and nvdiffrast / pytorch3d backends when they import."""
    from invertavatar_core.geometry.rasterizer.torch_backend import TorchRasterizer, TorchRasterizerConfig

    registrar.add(
        "torch",
        TorchRasterizer,
        TorchRasterizerConfig,
        description="pure-torch z-buffer rasteriser (CPU and CUDA), differentiable barycentrics",
    )
    try:
        from invertavatar_core.geometry.rasterizer.nvdiffrast_backend import (
            NvdiffrastRasterizer,
            NvdiffrastRasterizerConfig,
        )
    except ImportError:
        pass  # nvdiffrast is optional: no backend without it
    else:
        registrar.add(
            "nvdiffrast",
            NvdiffrastRasterizer,
            NvdiffrastRasterizerConfig,
            description="nvdiffrast (CUDA) triangle ids, torch barycentrics",
        )
    try:
        from invertavatar_core.geometry.rasterizer.pytorch3d_backend import (
            Pytorch3DRasterizer,
            Pytorch3DRasterizerConfig,
        )
    except ImportError:
        pass  # pytorch3d is optional: no backend without it
    else:
        registrar.add(
            "pytorch3d",
            Pytorch3DRasterizer,
            Pytorch3DRasterizerConfig,
            description="pytorch3d rasterize_meshes triangle ids, torch barycentrics",
        )
