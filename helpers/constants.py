"""Names shared by several steps: the folder layout's fixed names, split and dataset names, and the series map.

Every "run … first" message comes from ``run_first(step)``, so a renumbered notebook is renamed in one place.
"""

from __future__ import annotations

# Written last into a folder a step built completely (models, conversions, packaged servers).
READY_MARKER = ".workshop-ready.json"
# The variable the mcli SDK reads the platform API key from; the workshop only ever says whether it is set.
TOKEN_VARIABLE = "MOSAICML_API_TOKEN"
# Every variable that may hold a credential for mcli or an object store: masked in logs, kept from child services.
SECRET_VARIABLES = (
    "MOSAICML_API_TOKEN", "MOSAICML_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS", "GCS_KEY", "GCS_SECRET", "OCI_CLI_KEY_CONTENT", "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "COMET_API_KEY", "DATABRICKS_TOKEN", "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
)

SPLITS = ("train", "validation", "test")
TEXT_DATASET = "codebase"       # MDS dataset of the flattened code (step 2), trained on in step 3
QA_DATASET = "codebase_qa"      # MDS dataset of the docstring question/answer pairs (step 2)
FINETUNED_MODEL = "finetuned"   # <work_dir>/models/<this>: the step-4 Hugging Face folder

# Step number -> notebook file. Messages that send a learner back to a step use this map.
NOTEBOOKS = {
    0: "00_setup.ipynb",
    1: "01_download_repos.ipynb",
    2: "02_convert_to_mds.ipynb",
    3: "03_finetune.ipynb",
    4: "04_convert_to_hf.ipynb",
    5: "05_deploy.ipynb",
    6: "06_retrieval_qa.ipynb",
    7: "07_evaluate.ipynb",
    8: "08_qa_panel.ipynb",
}


def run_first(step: int) -> str:
    """The standard hint for a missing input: ``run notebooks/NN_name.ipynb first``."""
    return f"run notebooks/{NOTEBOOKS[step]} first"
