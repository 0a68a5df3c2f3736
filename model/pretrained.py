"""Initialisation of SSD-VGG300 variables from pretrained checkpoints.

Two checkpoint formats are recognised from their variable names:
- SSD-Tensorflow (`<checkpoint_model_scope>/...`, default the model scope `ssd_300_vgg`): every
  model variable is loaded from the same name with the scope swapped.
- slim's VGG-16 classifier (`vgg_16/...`): conv1..conv5 load directly; fc6 [7, 7, 512, 4096] and
  fc7 [1, 1, 4096, 4096] become the dilated conv6 [3, 3, 512, 1024] and conv7 [1, 1, 1024, 1024]
  by subsampling as in the SSD paper (every 3rd spatial tap, every 4th channel). A conv-only
  VGG-16 checkpoint (no fc6/fc7, as ImageNet conv weights often come) is normal input: conv6 and
  conv7 then keep their initialisers. The extra blocks, the box heads and the L2 scale always do.
The loader prints one line saying how many variables it restored and which scopes start fresh.
Values are assigned through placeholders, so the converted weights never enter the graph.
"""
import tensorflow.compat.v1 as tf

from model import checkpoints
from model.checkpoints import CheckpointError
from nets.nets_model import ssd_vgg_300
from utils import slim_compat

slim = slim_compat.import_slim()

VGG_SCOPE = 'vgg_16'
_ALL, _EVERY3, _EVERY4 = slice(None), slice(None, None, 3), slice(None, None, 4)
_VGG_CONVERSIONS = {  # model name (inside the scope) → (vgg name, slices applied to the vgg value)
    'conv6/weights': ('fc6/weights', (_EVERY3, _EVERY3, _ALL, _EVERY4)),
    'conv6/biases': ('fc6/biases', (_EVERY4,)),
    'conv7/weights': ('fc7/weights', (_ALL, _ALL, _EVERY4, _EVERY4)),
    'conv7/biases': ('fc7/biases', (_EVERY4,)),
}


def checkpoint_pairs(variables, model_scope, checkpoint_model_scope, is_vgg):
    """``(variable, checkpoint name, slices or None)`` for every variable the checkpoint format
    can hold (a VGG-16 checkpoint holds nothing past conv7)."""
    pairs = []
    for var in variables:
        local = var.op.name[len(model_scope) + 1:]
        slices = None
        if is_vgg:
            if local in _VGG_CONVERSIONS:
                local, slices = _VGG_CONVERSIONS[local]
            elif not local.startswith(('conv1/', 'conv2/', 'conv3/', 'conv4/', 'conv5/')):
                continue  # not part of VGG-16
        pairs.append((var, '%s/%s' % (checkpoint_model_scope, local), slices))
    return pairs


def _class_remedy(variables):
    heads = sorted({v.op.name.split(checkpoints.CLASS_HEAD)[0] + checkpoints.CLASS_HEAD.rstrip('/')
                    for v in variables if checkpoints.CLASS_HEAD in v.op.name})
    return (': pass --num_classes=%(found)d, or leave the class layers out with '
            '--checkpoint_exclude_scopes=' + ','.join(heads))


def _top_scopes(variables, model_scope):
    """Sorted first scope names below ``model_scope`` ('conv6', 'block4_box', ...)."""
    return sorted({v.op.name[len(model_scope) + 1:].split('/')[0] for v in variables})


def describe_plan(prefix, is_vgg, plan, variables, model_scope):
    """The one log line of a restore: how many variables from where, and which scopes start fresh."""
    loaded = {var.op.name for var, _, _ in plan}
    fresh = _top_scopes([v for v in variables if v.op.name not in loaded], model_scope)
    line = 'restored %d of %d model variables from %s (%s format)' % (
        len(plan), len(variables), prefix, 'vgg_16' if is_vgg else 'SSD')
    if fresh:
        line += '; starting from their initialisers: %s' % ', '.join(fresh)
    if is_vgg and {'conv6', 'conv7'} & set(fresh):
        line += ' (the checkpoint has no fc6/fc7 to convert into conv6/conv7)'
    return line


def init_fn_from_checkpoint(checkpoint_path, model_scope=ssd_vgg_300.SCOPE,
                            checkpoint_model_scope=None, exclude_scopes=(),
                            ignore_missing_vars=False, num_classes=None, log=print):
    """A function(sess) that loads `checkpoint_path` into the model variables under `model_scope`.

    Args:
      checkpoint_path: checkpoint prefix or a directory (its newest checkpoint).
      model_scope: scope of the model variables in the current graph.
      checkpoint_model_scope: scope of the weights inside the checkpoint; default `model_scope`
        for SSD checkpoints and `vgg_16` for VGG-16 ones (detected automatically).
      exclude_scopes: scopes (full names, e.g. 'ssd_300_vgg/block4_box/conv_cls') whose variables
        keep their initialisers, matched at scope boundaries (``checkpoints.in_scopes``); a
        comma-separated string is accepted.
      ignore_missing_vars: skip model variables absent from the checkpoint instead of failing.
      num_classes: the model's class count (default: read from its class heads).
      log: called once with the line of ``describe_plan``.
    Raises:
      checkpoints.CheckpointError: missing checkpoint, missing variable, or a shape mismatch
      (message names the variable and both shapes; for class heads both class counts).
    """
    prefix = checkpoints.resolve(checkpoint_path)
    reader = checkpoints.open_reader(prefix)
    checkpoint_shapes = reader.get_variable_to_shape_map()
    checkpoint_model_scope = checkpoint_model_scope or checkpoint_scope(prefix, checkpoint_shapes,
                                                                        model_scope)
    is_vgg = checkpoint_model_scope == VGG_SCOPE
    model_variables = [v for v in slim.get_model_variables(model_scope)
                       if v.op.name.startswith(model_scope + '/')]
    variables = [v for v in model_variables if not checkpoints.in_scopes(v.op.name, exclude_scopes)]
    if not variables:
        raise CheckpointError('no model variables under scope %r to initialise' % model_scope)
    plan = checkpoints.match_variables(
        prefix, checkpoint_shapes,
        checkpoint_pairs(variables, model_scope, checkpoint_model_scope, is_vgg),
        num_classes or checkpoints.model_num_classes(model_variables), ignore_missing_vars,
        remedy='; use --ignore_missing_vars or --checkpoint_exclude_scopes',
        class_remedy=_class_remedy(variables))
    if not plan:
        raise CheckpointError('checkpoint %s holds none of the model variables under %s/'
                              % (prefix, checkpoint_model_scope))
    log(describe_plan(prefix, is_vgg, plan, model_variables, model_scope))
    return _assign_fn(plan, reader)


def checkpoint_scope(prefix, checkpoint_shapes, model_scope):
    """The scope of the weights in a checkpoint (``checkpoint_shapes``: its name -> shape map):
    ``model_scope`` for an SSD checkpoint, ``vgg_16`` for a VGG-16 one; CheckpointError for
    any other, listing the scopes it holds."""
    scopes = sorted({name.split('/')[0] for name in checkpoint_shapes})
    for scope in (model_scope, VGG_SCOPE):
        if scope in scopes:
            return scope
    raise CheckpointError('checkpoint %s holds neither %s/ nor %s/ variables (top-level '
                          'scopes: %s); set --checkpoint_model_scope'
                          % (prefix, model_scope, VGG_SCOPE, ', '.join(scopes)))


def _assign_fn(plan, reader):
    """fn(sess) assigning every ``(variable, checkpoint name, slices)`` of ``plan`` its
    checkpoint value (sliced), fed through placeholders so the values never enter the graph."""
    placeholders = [tf.placeholder(var.dtype.base_dtype, var.get_shape()) for var, _, _ in plan]
    assign_op = tf.group(*[tf.assign(var, ph) for (var, _, _), ph in zip(plan, placeholders)],
                         name='init_from_checkpoint')

    def init_fn(sess):
        feed = {}
        for (_, name, slices), ph in zip(plan, placeholders):
            value = reader.get_tensor(name)
            feed[ph] = value if slices is None else value[slices]
        sess.run(assign_op, feed_dict=feed)

    return init_fn
