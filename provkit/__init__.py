"""provkit: an investigation workbook for Microsoft Entra ID application provisioning."""

from provkit.errors import ProvkitError

__version__ = "0.1.0"

__all__ = ["ProvkitError", "__version__"]
