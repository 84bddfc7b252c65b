"""compression.distillation: a small student learns from a large teacher's soft outputs.

==============  ==============================================================
``kd``          ``kd_loss``: Hinton et al.'s loss with the ``T^2`` factor and
                its gradient derived by hand; ``KDLoss`` for ``tinynet.fit``
``teacher``     the teacher's outputs, cached or computed batch by batch
``hints``       FitNets: a hint loss between a student layer (through a
                learned regressor) and a teacher layer; stage 1 via ``fit``
``transfer``    a student that starts as the teacher's best units, thinned
``technique``   the ``distillation`` entry of the sweep (imported by it)
==============  ==============================================================
"""

from compression.distillation.hints import (
    HintBatches,
    HintLoss,
    feature_shape,
    fitnets_stage1,
    hint_model,
    make_regressor,
    teacher_hints,
    truncate,
)
from compression.distillation.kd import KDLoss, check_kd_arguments, kd_loss
from compression.distillation.teacher import TeacherBatches, teacher_logits
from compression.distillation.transfer import (
    hidden_widths,
    masked_copy,
    student_from_teacher,
    target_widths,
)

__all__ = [
    "HintBatches",
    "HintLoss",
    "KDLoss",
    "TeacherBatches",
    "check_kd_arguments",
    "feature_shape",
    "fitnets_stage1",
    "hidden_widths",
    "hint_model",
    "kd_loss",
    "make_regressor",
    "masked_copy",
    "student_from_teacher",
    "target_widths",
    "teacher_hints",
    "teacher_logits",
    "truncate",
]
