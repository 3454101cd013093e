# llamad-instance.sed - makes the template unit llamad@.service from
# llamad.service.in (the build runs it before the @placeholder@ substitution).
# The instance name is the GPU's index (gpu-device, with the CUDA order set
# to the PCI bus order, which nvidia-smi shows); the port comes from
# @sysconfdir@/llamad/llamad-%i.env (LLAMAD_PORT=...), which must exist.
s|^# llamad.service - llamad under systemd|# llamad@.service - one llamad per GPU, the instance is the GPU index|
s|^# Site changes belong in a drop-in: systemctl edit llamad\.|# Site changes belong in a drop-in: systemctl edit llamad@N.|
s|^Description=.*|& on GPU %i|
s|^ExecStart=\(.*\)$|Environment=CUDA_DEVICE_ORDER=PCI_BUS_ID\nEnvironmentFile=@sysconfdir@/llamad/llamad-%i.env\nExecStart=\1 --gpu-device %i --port ${LLAMAD_PORT}|
s|^DeviceAllow=/dev/nvidia0 rw|DeviceAllow=/dev/nvidia%i rw|
