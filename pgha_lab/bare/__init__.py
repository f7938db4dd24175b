"""The bare lab (`pgha-lab up --bare`): the ready lab's topology, names and addresses, on nodes that
boot systemd like freshly installed Ubuntu 24.04 VMs, with the software installed and nothing
configured or running. The learner (issue 23's track) or the exported playbook (deploy/) builds the
cluster on them; what a bare node holds is read in `survey`."""
