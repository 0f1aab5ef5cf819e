"""Distil the Obscrowd teacher into the student generator: teacher targets (cached), then accelerate.

The same script runs on a CPU, one GPU, or many GPUs and nodes (``obscrowd train-student`` is the
same command). Every option: ``python scripts/train_student.py --help``.

    # this CPU, one process (~4 min: 21 images, 15-step teacher, 200 student steps; notebook 03's demo)
    python scripts/train_student.py --output-dir runs/student --cpu --steps 200 --batch-size 4 \
        --identity-every 4 --teacher-steps 15 --teacher-ensemble mobileface dlib-faceapi faceres \
        --teacher-attacks identity jpeg-diff resize-diff blur-diff --install

    # GPUs, with your own photos added to the sample set (CelebA-HQ, FFHQ, group photos): the teacher
    # runs are shared between the processes, then every process trains on its slice of each batch
    accelerate launch --multi_gpu --num_processes 8 scripts/train_student.py --output-dir runs/student \
        --target-size 256 --target-crops-per-photo 50 --teacher-steps 100 --steps 20000 --batch-size 16

    # two CPU processes (what the tests run): accelerate's `--cpu --num_processes 2` starts ONE process
    # (multi-CPU needs MPI there), so hide the GPUs and pass the script's own --cpu instead
    CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu --num_processes 2 scripts/train_student.py --cpu ...

Resuming: run the same command again; the targets resume at the first missing teacher run and the
training at the last checkpoint of --output-dir (pass --no-resume to start over).
"""

import sys

from obscrowd_lib.student import main

if __name__ == "__main__":
    sys.exit(main())
