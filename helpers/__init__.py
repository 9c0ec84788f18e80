"""The helper library behind the workshop notebooks: one flat module per job, imported by the notebooks.

==============  =====================================================================
module          what it does
==============  =====================================================================
config          the one configuration every notebook shares (``load_config``)
constants       names shared by several steps (markers, splits, datasets, notebooks)
errors          ``WorkshopError`` and the named errors derived from it
files           atomic writes: a unique temporary name, then a rename
credentials     keep tokens out of logs and child processes
environment     step 0: machine and package checks
models          the embedded models and the model folders of later steps
repos           step 1: fetch sources and flatten them to text
mds             step 2: text and JSONL to MDS
mds_jobs        step 2 as MCLI jobs: stage the splits, run the conversion yamls here or on the platform
qa_dataset      step 2: question/answer pairs from docstrings (or CoQA)
runs            run an MCLI yaml here or on the platform
finetune        step 3: LLM Foundry training, perplexity and the answer keyword rate
convert         step 4: Composer checkpoint to Hugging Face
services        loopback background services
deploy          step 5: serve the model over HTTP
qa              step 6: retrieval QA (a package: chunking, index, search, generation, chain)
evaluate        step 7: retrieval and answer evaluation
panel, app      step 8: the ipywidgets panel and its Voilà web app
browser         Chromium driving the served panel (web-app test, quick-path benchmark)
series          run the notebooks headless (``make workshop``)
==============  =====================================================================

Modules are imported by name (``from helpers import qa``) so a notebook loads only what its step needs.
"""

from helpers.config import WorkshopConfig, load_config
from helpers.errors import WorkshopError

__all__ = ["WorkshopConfig", "WorkshopError", "load_config"]
