"""cordon: keep API keys out of AI coding agents.

A loopback proxy injects real credentials into requests for configured hosts;
the agent only ever holds a placeholder. This module holds the version only:
importing it must stay cheap (the exec start-up budget is 150 ms).
"""

__version__ = "0.1.0"
