"""ComfyUI-RationalRewards: a reasoning critic (RationalRewards) as ComfyUI nodes.

Registered through the V3 entry point only (no NODE_CLASS_MAPPINGS, which would
make ComfyUI skip the V3 path). The core in ``models/`` has no ComfyUI imports; the
nodes (and ComfyUI) are imported only when ComfyUI asks for the extension.
"""
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import RationalRewardsExtension, register_model_folder

    register_model_folder()
    return RationalRewardsExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
