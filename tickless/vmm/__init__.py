"""The micro-VMM: assembles KVM objects, the guest image and devices into running guests."""
