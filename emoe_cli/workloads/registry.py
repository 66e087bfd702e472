"""The kinds of task a run can be: `task.kind` names one of these builders."""

from emoe_cli.workloads.causal_lm import causal_lm_workload
from emoe_cli.workloads.image import image_workload
from emoe_cli.workloads.text import text_workload

WORKLOADS = {"text": text_workload, "image": image_workload, "causal_lm": causal_lm_workload}
