# Seed 001's "Python Example (RTP Streaming)", run by tests/interop/test_seed_examples.py.
#
# The test fills in the host, the call id and the token (the seed's placeholders below) and
# runs a copy with the venv's python. Two changes to the seed, both forced:
# - process_audio() and generate_audio() are defined before ws.run_forever(): in the seed
#   they come after it, so the callbacks would raise NameError (run_forever() returns only
#   when the socket closes).
# - generate_audio() builds the RTP packet the seed's comments ask for ("In production,
#   properly construct RTP packets"): an RTP v2 header (RFC 3550 section 5.1, PT 0 PCMU)
#   before the whole of audio_to_inject.raw (mu-law), instead of 160 headerless bytes.
# The seed's layout is kept as printed (its import order and spacing):
# ruff: noqa: I001
# fmt: off
import websocket
import struct

def on_message(ws, message):
    """Receive audio data from the call"""
    # message contains RTP packets
    print(f"Received {len(message)} bytes of audio")

    # Process audio here
    # - Save to file
    # - Run speech recognition
    # - Analyze audio
    process_audio(message)

def on_open(ws):
    """Connection established, can start sending audio"""
    print("Media stream connected")

    # Send audio to the call
    # audio_data should be RTP packets
    audio_data = generate_audio()
    ws.send(audio_data, opcode=websocket.ABNF.OPCODE_BINARY)

def on_error(ws, error):
    print(f"Error: {error}")

def on_close(ws, close_status_code, close_msg):
    print(f"Connection closed: {close_status_code}")

def process_audio(rtp_packet):
    """Process received RTP audio"""
    # Extract payload from RTP packet
    # RTP header is typically 12 bytes
    payload = rtp_packet[12:]

    # Save or process audio
    with open('received_audio.raw', 'ab') as f:
        f.write(payload)

def generate_audio():
    """Generate RTP packets to send"""
    # Read audio file (8 kHz mu-law)
    with open('audio_to_inject.raw', 'rb') as f:
        audio_data = f.read()

    # Construct RTP header: version 2, marker, payload type 0 (PCMU),
    # sequence number 1, timestamp 0, SSRC
    header = struct.pack('!BBHII', 0x80, 0x80 | 0, 1, 0, 0x5EED0001)
    return header + audio_data

# Connect to media stream
call_id = "652af662-eb45-11ee-b1a5-6fde165f9226"
token = "<YOUR_AUTH_TOKEN>"
ws_url = f"wss://api.voipbin.net/v1.0/calls/{call_id}/media_stream?encapsulation=rtp&token={token}"

ws = websocket.WebSocketApp(
    ws_url,
    on_open=on_open,
    on_message=on_message,
    on_error=on_error,
    on_close=on_close
)

ws.run_forever()
