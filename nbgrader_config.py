"""nbgrader configuration for the ConvNet Workbook. The course root is this directory.

nbgrader's "source" step is solutions/ and its "release" step is notebooks/ (committed).
submitted/, autograded/, feedback/ and gradebook.db are course state and git-ignored.
Run nbgrader from this directory; `grader` finds this file from here or any directory below (or --course).
"""
import os

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# Must equal grader.course.COURSE_ID. A non-empty id is required by databases that enforce foreign keys
# (PostgreSQL): nbgrader's default '' names no course row.
c.CourseDirectory.course_id = "convnet-workbook"
# The gradebook: SQLite in the course root by default; a shared course sets WORKBOOK_DB_URL
# (e.g. postgresql://user@host/course) for nbgrader and `grader` alike.
if os.environ.get("WORKBOOK_DB_URL"):
    c.CourseDirectory.db_url = os.environ["WORKBOOK_DB_URL"]
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# Anything beside the notebook in solutions/<assignment>/ is released too, except these.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.db"]

# What a student sees in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# The limits of one student's kernel, in one table (README, "Grading and trust", shows the same table).
# Hidden tests are sized to finish in under 5 s with naive loops; a kernel with numpy loaded uses ~120 MiB.
#
#   limit              this course                 Judge0 default (max)        PrairieLearn default
#   cell_timeout       120 s wall per cell          10 s wall (20)              30 s per grading job
#   call_timeout       60 s wall per call           -                           -
#   notebook_timeout   1800 s wall per notebook     -                           (the job's 30 s)
#   cpu_seconds        600 s CPU per process        5 s CPU (15)                -
#   memory             2048 MiB, whole tree, no swap  128 MB (512 MB)           -
#   address_space      4096 MiB per process         (in the memory limit)       -
#   processes          64, whole tree               60 processes/threads        -
#   output_bytes       1 MiB kept per cell          (stdout capped by size)     -
#   kill_output_bytes  16 MiB, then the kernel stops  -                        -
#   file_size          64 MiB per file              1 MB (4 MB)                 -
#   tmpfs_size         256 MiB scratch copy, /tmp, /dev/shm each  -             -
#   open_files         256 per process              -                           -
MiB = 1 << 20
LIMITS = {
    "cell_timeout": 120, "call_timeout": 60, "notebook_timeout": 1800, "cpu_seconds": 600,
    "memory": 2048 * MiB, "address_space": 4096 * MiB, "processes": 64,
    "output_bytes": 1 * MiB, "kill_output_bytes": 16 * MiB, "file_size": 64 * MiB, "tmpfs_size": 256 * MiB,
    "open_files": 256,
}
c.ExecutePreprocessor.timeout = LIMITS["cell_timeout"]
c.Execute.timeout = LIMITS["cell_timeout"]

# Trusted grading: student code runs in a sandboxed kernel (bubblewrap from pip, else rlimits with a loud
# "degraded sandbox" notice); graded cells run in the grader's own process, restored from the source
# notebook, and only plain data crosses back from the kernel. See grader/trusted/.
from grader.trusted import configure  # noqa: E402

configure(c)
c.TrustedExecute.sandbox = os.environ.get("WORKBOOK_SANDBOX", "auto")  # auto | bwrap | rlimits | none
c.TrustedExecute.timeout = LIMITS["cell_timeout"]
c.TrustedExecute.call_timeout = LIMITS["call_timeout"]
c.TrustedExecute.notebook_timeout = LIMITS["notebook_timeout"]
c.TrustedExecute.max_output_bytes = LIMITS["output_bytes"]
c.TrustedExecute.kill_output_bytes = LIMITS["kill_output_bytes"]
c.TrustedExecute.limits = {name: LIMITS[name] for name in (
    "memory", "address_space", "processes", "cpu_seconds", "open_files", "file_size", "tmpfs_size")}
# Import audit: what student code may import. Findings are reported in the grading summary and the
# feedback; "flag" keeps the score, "zero" sets the notebook's score to 0.
c.ImportAudit.default_allowed = ["numpy", "math"]
# 09 trains a network: its training loop draws a progress bar (tqdm) and may use the student package.
c.ImportAudit.allowed = {"09_train_convnet": ["numpy", "math", "tqdm", "workbook"]}
c.ImportAudit.policy = "flag"
# The given layers (workbook.layers) that an assignment asks the student to write: a submission whose own code
# uses one of them there scores 0 (c.ImportAudit.forbidden_policy = "zero"); later assignments use them freely.
c.ImportAudit.forbidden = {
    "02_conv_forward": ["conv_forward", "conv_backward"],
    "03_conv_backward": ["conv_backward"],
    "04_pooling": ["max_pool_forward", "max_pool_backward", "avg_pool_forward", "avg_pool_backward",
                   "global_avg_pool_forward", "global_avg_pool_backward"],
    "05_im2col": ["conv_forward", "conv_backward", "max_pool_forward", "max_pool_backward"],
    "06_1x1_and_dilated": ["conv_forward", "conv_backward"],
}
# What a submitted notebook may be before `grader autograde` refuses to read it (one line naming the file and
# the reason; every graded cell of it recorded as 0).
c.SubmissionLimits.max_bytes = 20 << 20
c.SubmissionLimits.max_cells = 2000
