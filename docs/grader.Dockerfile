# The grader in a container, for untrusted submissions (docs/teaching.md, "Grading").
#
# Build from the course folder (the one with book.toml):
#   docker build -t diffusion-grader -f docs/grader.Dockerfile .
# Grade (the file system read-only, no network, memory and processes bounded):
#   mkdir -p out
#   docker run --rm --network none --read-only --tmpfs /tmp --memory 8g --pids-limit 512 \
#       -v "$PWD/submissions:/subs:ro" -v "$PWD/out:/out" diffusion-grader \
#       sh -c 'diffusion-lessons grade /subs/*.ipynb --csv /out/grades.csv'
#
# The image holds the package (installed, not editable) and book.toml, and in notebooks/ the
# *student editions*: the grader reads the exercises from them, and a submission finds no
# solution to copy.
FROM python:3.11-slim

# CPU-only PyTorch (PyPI's default Linux wheel brings CUDA, gigabytes the grader does not use)
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu

WORKDIR /course
COPY pyproject.toml README.md book.toml ./
COPY diffusion_lessons diffusion_lessons
COPY notebooks notebooks
RUN pip install --no-cache-dir ".[teach]" \
    && rm -rf diffusion_lessons build *.egg-info \
    && diffusion-lessons student /tmp/student --manifest book.toml \
    && rm -rf notebooks && mv /tmp/student notebooks \
    && python -c "import diffusion_lessons.grading"

# --read-only: matplotlib and IPython keep their caches under the writable /tmp
ENV MPLCONFIGDIR=/tmp/matplotlib IPYTHONDIR=/tmp/ipython PYTHONDONTWRITEBYTECODE=1
