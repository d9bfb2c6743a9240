//! BPF side of bpfvisor: from BPF instructions to x86-64 code for the guest.
