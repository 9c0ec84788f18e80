"""The MLflow model that step 5 serves: the generator's OpenVINO export behind MLflow's pyfunc interface.

MLflow loads this file as *model code* (``mlflow.pyfunc.save_model(python_model=<this file>)``), so the packaged
model holds no pickle: the server reads this source and the OpenVINO files, nothing else. A request is a list of
already rendered prompts; each gets a greedy completion (the prompt itself is not repeated in the answer). A
``pattern`` parameter (a regular expression) constrains the completion to match it, as the in-process generator does.
"""

from __future__ import annotations

import re
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

ARTIFACT = "openvino_model"
DEFAULTS = {"max_new_tokens": 64, "repetition_penalty": 1.1, "pattern": ""}


class OpenVINOTextGenerator(PythonModel):
    """Greedy text completion with openvino-genai's LLMPipeline."""

    def load_context(self, context: PythonModelContext) -> None:
        import openvino_genai as ov_genai

        self.pipeline = ov_genai.LLMPipeline(context.artifacts[ARTIFACT], "CPU")

    def predict(self, context: PythonModelContext, model_input: Any, params: dict[str, Any] | None = None) -> list[str]:
        import openvino_genai as ov_genai

        settings = {**DEFAULTS, **(params or {})}
        config = self.pipeline.get_generation_config()
        config.max_new_tokens = int(settings["max_new_tokens"])
        config.repetition_penalty = float(settings["repetition_penalty"])
        config.do_sample = False
        config.apply_chat_template = False  # prompts arrive rendered
        if pattern := str(settings["pattern"]):
            # Checked before the engine sees it, as in the workshop's own generator: a server answers many clients,
            # and after two patterns the engine rejected in a row its next answer drifted.
            try:
                re.compile(pattern)
            except re.error as err:
                raise MlflowException(f"pattern {pattern!r} is not a regular expression ({err})",
                                      error_code=INVALID_PARAMETER_VALUE) from None
            config.structured_output_config = ov_genai.StructuredOutputConfig(regex=pattern)
        prompts = model_input.iloc[:, 0].tolist() if hasattr(model_input, "iloc") else list(model_input)
        return [str(self.pipeline.generate(str(prompt), config)) for prompt in prompts]


mlflow.models.set_model(OpenVINOTextGenerator())
