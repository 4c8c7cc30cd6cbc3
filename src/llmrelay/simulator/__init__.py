"""The provider simulator: OpenAI, Anthropic, Gemini and Ollama wire formats on loopback.

It is the test bed, the benchmark upstream and the offline default of llmrelay; the
official SDKs accept it as the real service.
"""

from llmrelay.simulator.app import Simulator
from llmrelay.simulator.config import ModelSpec, Script, SimulatorConfig, load_config
from llmrelay.simulator.server import SimulatorServer

__all__ = ["ModelSpec", "Script", "Simulator", "SimulatorConfig", "SimulatorServer", "load_config"]
