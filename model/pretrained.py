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


class CheckpointError(ValueError):
    """A checkpoint that cannot initialise the model (missing file, variable or wrong shape)."""


def _resolve(checkpoint_path):
    if tf.gfile.IsDirectory(checkpoint_path):
        prefix = tf.train.latest_checkpoint(checkpoint_path)
        if prefix is None:
            raise CheckpointError('no checkpoint found in directory %s' % checkpoint_path)
        return prefix
    if not tf.gfile.Exists(checkpoint_path + '.index') and not tf.gfile.Exists(checkpoint_path):
        raise CheckpointError('checkpoint not found: %s' % checkpoint_path)
    return checkpoint_path


def _excluded(name, exclude_scopes):
    return any(name == s or name.startswith(s.rstrip('/') + '/') for s in exclude_scopes if s)


def _class_count_hint(var_name, model_shape, ckpt_shape, ckpt_shapes, ckpt_name):
    """For a class head (`.../conv_cls/...`) the class counts behind both shapes, else ''."""
    if '/conv_cls/' not in var_name:
        return ''
    # Anchors per cell come from the same layer's box regressor (4 outputs per anchor).
    loc_shape = ckpt_shapes.get(ckpt_name.split('/conv_cls/')[0] + '/conv_loc/biases')
    if not loc_shape:
        return ''
    anchors = loc_shape[-1] // 4
    return ('; the checkpoint has %d classes, the model %d (add %s to --checkpoint_exclude_scopes '
            'to train this head from scratch)' % (ckpt_shape[-1] // anchors, model_shape[-1] // anchors,
                                                   var_name.split('/conv_cls/')[0] + '/conv_cls'))


def _plan(variables, reader, model_scope, checkpoint_model_scope, is_vgg, ignore_missing_vars):
    """List of (variable, checkpoint name, slices or None) to load; raises CheckpointError.

    Variables left out of the plan keep their initialisers.
    """
    ckpt_shapes = reader.get_variable_to_shape_map()
    plan = []
    for var in variables:
        local = var.op.name[len(model_scope) + 1:]
        slices = None
        if is_vgg:
            if local in _VGG_CONVERSIONS:
                local, slices = _VGG_CONVERSIONS[local]
            elif not local.startswith(('conv1/', 'conv2/', 'conv3/', 'conv4/', 'conv5/')):
                continue  # not part of VGG-16
        name = '%s/%s' % (checkpoint_model_scope, local)
        if name not in ckpt_shapes:
            if slices is not None:
                continue  # a conv-only VGG-16 checkpoint: no fc6/fc7 to make conv6/conv7 from
            if ignore_missing_vars:
                tf.logging.warning('variable %s not in the checkpoint; keeping its initialiser', name)
                continue
            raise CheckpointError('variable %s (for %s) not found in the checkpoint; use '
                                  '--ignore_missing_vars or --checkpoint_exclude_scopes'
                                  % (name, var.op.name))
        model_shape = var.get_shape().as_list()
        ckpt_shape = ckpt_shapes[name]
        loaded_shape = ckpt_shape if slices is None else [
            len(range(*s.indices(n))) for s, n in zip(slices, ckpt_shape)]
        if loaded_shape != model_shape:
            converted = '' if slices is None else ' (after subsampling to %s)' % (loaded_shape,)
            raise CheckpointError('shape mismatch for %s: checkpoint %s has %s%s, the model needs %s%s' % (
                var.op.name, name, ckpt_shape, converted, model_shape,
                _class_count_hint(var.op.name, model_shape, ckpt_shape, ckpt_shapes, name)))
        plan.append((var, name, slices))
    return plan


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


def init_fn_from_checkpoint(checkpoint_path, model_scope='ssd_300_vgg', checkpoint_model_scope=None,
                            exclude_scopes=(), ignore_missing_vars=False, log=print):
    """A function(sess) that loads `checkpoint_path` into the model variables under `model_scope`.

    Args:
      checkpoint_path: checkpoint prefix or a directory (its newest checkpoint).
      model_scope: scope of the model variables in the current graph.
      checkpoint_model_scope: scope of the weights inside the checkpoint; default `model_scope`
        for SSD checkpoints and `vgg_16` for VGG-16 ones (detected automatically).
      exclude_scopes: variable-name prefixes (full names, e.g. 'ssd_300_vgg/block4_box/conv_cls')
        left at their initialisers; a comma-separated string is accepted.
      ignore_missing_vars: skip model variables absent from the checkpoint instead of failing.
      log: called once with the line of ``describe_plan``.
    Raises:
      CheckpointError: missing checkpoint, missing variable, or a shape mismatch (message names
      the variable and both shapes; for class heads also both class counts).
    """
    if isinstance(exclude_scopes, str):
        exclude_scopes = [s.strip() for s in exclude_scopes.split(',')]
    exclude_scopes = exclude_scopes or ()
    prefix = _resolve(checkpoint_path)
    try:
        reader = tf.train.NewCheckpointReader(prefix)
    except tf.errors.OpError as e:
        raise CheckpointError('cannot read checkpoint %s: %s' % (prefix, e.message.splitlines()[0]))
    if not checkpoint_model_scope:   # None or an empty flag: detect
        scopes = sorted({n.split('/')[0] for n in reader.get_variable_to_shape_map()})
        if model_scope in scopes:
            checkpoint_model_scope = model_scope
        elif VGG_SCOPE in scopes:
            checkpoint_model_scope = VGG_SCOPE
        else:
            raise CheckpointError('checkpoint %s holds neither %s/ nor %s/ variables (top-level scopes: %s); '
                                  'set --checkpoint_model_scope' % (prefix, model_scope, VGG_SCOPE,
                                                                    ', '.join(scopes)))
    is_vgg = checkpoint_model_scope == VGG_SCOPE
    model_variables = [v for v in slim.get_model_variables(model_scope)
                       if v.op.name.startswith(model_scope + '/')]
    variables = [v for v in model_variables if not _excluded(v.op.name, exclude_scopes)]
    if not variables:
        raise CheckpointError('no model variables under scope %r to initialise' % model_scope)
    plan = _plan(variables, reader, model_scope, checkpoint_model_scope, is_vgg, ignore_missing_vars)
    if not plan:
        raise CheckpointError('checkpoint %s holds none of the model variables under %s/'
                              % (prefix, checkpoint_model_scope))

    placeholders = [tf.placeholder(var.dtype.base_dtype, var.get_shape()) for var, _, _ in plan]
    assign_op = tf.group(*[tf.assign(var, ph) for (var, _, _), ph in zip(plan, placeholders)],
                         name='init_from_checkpoint')
    log(describe_plan(prefix, is_vgg, plan, model_variables, model_scope))

    def init_fn(sess):
        feed = {}
        for (_, name, slices), ph in zip(plan, placeholders):
            value = reader.get_tensor(name)
            feed[ph] = value if slices is None else value[slices]
        sess.run(assign_op, feed_dict=feed)

    return init_fn
