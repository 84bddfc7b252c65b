"""compression.distillation: a small student learns from a large teacher's soft outputs.

==============  ==============================================================
``kd``          ``kd_loss``: Hinton et al.'s loss with the ``T^2`` factor and
                its gradient derived by hand; ``KDLoss`` for ``tinynet.fit``
``teacher``     the teacher's outputs, cached or computed batch by batch
==============  ==============================================================
"""

from compression.distillation.kd import KDLoss, check_kd_arguments, kd_loss
from compression.distillation.teacher import TeacherBatches, teacher_logits

__all__ = ["KDLoss", "TeacherBatches", "check_kd_arguments", "kd_loss", "teacher_logits"]
