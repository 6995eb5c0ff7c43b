# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_wg_pkcs11_global_optspecs
    string join \n f/foreground h/help V/version
end

function __fish_wg_pkcs11_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_wg_pkcs11_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_wg_pkcs11_using_subcommand
    set -l cmd (__fish_wg_pkcs11_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -s f -l foreground -d 'With INTERFACE: stay in the foreground (as `wireguard-go -f`)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -s V -l version -d 'Print version'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "up" -d 'Bring up the interface: PreUp, the device, addresses, MTU, routes, DNS, PostUp'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "down" -d 'Take the interface down (saving it first if SaveConfig = true)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "save" -d 'Save the running peers, listen port and fwmark into the config, keeping PrivateKey'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "strip" -d 'Print the config as `wg setconf` reads it (no wg-quick keys, no pkcs11: PrivateKey)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "genkey" -d 'Generate an X25519 key pair in the token, print its public key'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "pubkey" -d 'Print the public key of a token key (or of a base64 private key on stdin)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "show" -d 'Show the interface\'s state, with its public key and the key\'s health'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "list" -d 'List the token\'s X25519 keys: label, id, public key and the pkcs11: URI'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "set" -d 'Switch the running interface to another token key and handshake at once'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "rotate" -d 'Rotate the interface\'s token key without downtime'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "attest" -d 'Write the chip\'s attestation of a token key (evidence, JSON) to stdout'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "verify-attestation" -d '(server) Verify a device\'s attestation evidence'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "admit" -d '(server) Verify the evidence, then add the device as a peer with `wg set`'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "nonce" -d '(server) Issue a single-use nonce for a device\'s attestation'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "version" -d 'Print the version (as --version)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand up" -s f -l foreground -d 'Stay in the foreground (for service managers)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand up" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand down" -s h -l help -d 'Print help'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand save" -s h -l help -d 'Print help'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand strip" -s h -l help -d 'Print help'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand genkey" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand pubkey" -s h -l help -d 'Print help'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand show" -l json -d 'As JSON'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand rotate" -l config -d 'The interface\'s config (default /etc/wireguard/IFNAME.conf): its PrivateKey URI names the old key, and it is rewritten to the new one' -r -F
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand rotate" -l label -d 'Label of the new key (default: the old label with the date and time)' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand rotate" -l hook -d 'Registers the new key with the server (`sh -c`); without it, wait for Enter on stdin' -r -f -a "(__fish_complete_command)"
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand rotate" -l check -d 'Must succeed through the tunnel with the new key before the old key is deleted' -r -f -a "(__fish_complete_command)"
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand rotate" -l timeout -d 'Seconds to wait for the handshakes and the check' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand rotate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand attest" -l nonce -d 'The server\'s nonce (`wg-pkcs11 nonce`)' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand attest" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand verify-attestation" -l nonce -d 'The nonce the device answered (from `wg-pkcs11 nonce`; used up)' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand verify-attestation" -l root -d 'A trusted root certificate (repeatable; default: NXP\'s shipped root)' -r -F
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand verify-attestation" -l nonce-dir -d 'The nonce store (default /var/lib/wg-pkcs11/nonces or $WG_PKCS11_NONCE_DIR)' -r -f -a "(__fish_complete_directories)"
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand verify-attestation" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand admit" -l nonce -d 'The nonce the device answered (from `wg-pkcs11 nonce`; used up)' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand admit" -l root -d 'A trusted root certificate (repeatable; default: NXP\'s shipped root)' -r -F
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand admit" -l nonce-dir -d 'The nonce store (default /var/lib/wg-pkcs11/nonces or $WG_PKCS11_NONCE_DIR)' -r -f -a "(__fish_complete_directories)"
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand admit" -l allowed-ips -d 'The new peer\'s allowed-ips, as `wg set` takes them' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand admit" -l endpoint -d 'The new peer\'s endpoint' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand admit" -l persistent-keepalive -d 'The new peer\'s persistent keepalive (seconds)' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand admit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand nonce" -l ttl -d 'Seconds the nonce stays valid' -r
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand nonce" -l nonce-dir -d 'The nonce store (default /var/lib/wg-pkcs11/nonces or $WG_PKCS11_NONCE_DIR)' -r -f -a "(__fish_complete_directories)"
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand nonce" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand version" -s h -l help -d 'Print help'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "up" -d 'Bring up the interface: PreUp, the device, addresses, MTU, routes, DNS, PostUp'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "down" -d 'Take the interface down (saving it first if SaveConfig = true)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "save" -d 'Save the running peers, listen port and fwmark into the config, keeping PrivateKey'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "strip" -d 'Print the config as `wg setconf` reads it (no wg-quick keys, no pkcs11: PrivateKey)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "genkey" -d 'Generate an X25519 key pair in the token, print its public key'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "pubkey" -d 'Print the public key of a token key (or of a base64 private key on stdin)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "show" -d 'Show the interface\'s state, with its public key and the key\'s health'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "list" -d 'List the token\'s X25519 keys: label, id, public key and the pkcs11: URI'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "set" -d 'Switch the running interface to another token key and handshake at once'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "rotate" -d 'Rotate the interface\'s token key without downtime'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "attest" -d 'Write the chip\'s attestation of a token key (evidence, JSON) to stdout'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "verify-attestation" -d '(server) Verify a device\'s attestation evidence'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "admit" -d '(server) Verify the evidence, then add the device as a peer with `wg set`'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "nonce" -d '(server) Issue a single-use nonce for a device\'s attestation'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "version" -d 'Print the version (as --version)'
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand help; and not __fish_seen_subcommand_from up down save strip genkey pubkey show list set rotate attest verify-attestation admit nonce version help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

# Interface names (not generated by clap): configs for up/down/save/strip, running interfaces
# for show/set/rotate.
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand up down save strip" -f -a "(set -l d /etc/wireguard; set -q WG_PKCS11_CONFIG_DIR; and set d \$WG_PKCS11_CONFIG_DIR; for f in \$d/*.conf; basename \$f .conf; end)"
complete -c wg-pkcs11 -n "__fish_wg_pkcs11_using_subcommand show set rotate" -f -a "(for f in /run/wireguard/*.sock; basename \$f .sock; end)"
