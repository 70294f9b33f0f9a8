// 802.11a ad-hoc exchanges: in every slot (one exchange of one round) each
// device broadcasts its message as UDP datagrams; a receive sink in C++
// records, per directed pair and slot, the application bytes received and when
// the message became complete.
//
// Compiled at run time through the ns-3 Python bindings (cppyy); everything
// per packet stays in C++. Results come back as one flat std::vector<double>.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace nsdml
{

struct BroadcastSlots
{
    // Geometry and radio.
    std::vector<double> x;  // metres
    std::vector<double> y;  // metres
    std::string phyMode = "OfdmRate12Mbps";
    double txPowerDbm = 16.0206;
    // Traffic.
    std::vector<uint32_t> payloads;  // bytes each device sends, one entry per slot (round x exchange)
    uint32_t datagramBytes = 1400;
    double slotPeriodS = 2.0;          // spacing of slot starts (deadline + drain)
    double startJitterS = 1.0;         // each device starts sending at U(0, jitter) after the slot start
    double datagramIntervalS = 0.002;  // pacing between a device's consecutive datagrams
    // RNG.
    uint32_t seed = 1;
    uint32_t run = 1;
};

// Header carried in the first bytes of every datagram.
struct DatagramTag
{
    uint32_t slot;
    uint32_t sender;
};

constexpr uint32_t kIdleProbeSlot = 0xFFFFFFFFu;
constexpr double kIdleProbeStartS = 0.5;
constexpr double kIdleProbeSpacingS = 0.005;  // far longer than one frame: the probe sees an idle channel
constexpr uint16_t kPort = 9;

inline void
SendDatagram(ns3::Ptr<ns3::Socket> socket, uint32_t slot, uint32_t sender, uint32_t size)
{
    std::vector<uint8_t> buffer(size, 0);
    DatagramTag tag{slot, sender};
    std::memcpy(buffer.data(), &tag, sizeof(tag));
    socket->Send(ns3::Create<ns3::Packet>(buffer.data(), size));
}

// Layout of the result:
//   [0, N*N)                     idle probe: 1 if j received i's lone probe datagram, at index i*N+j
//   per slot s, two N*N blocks: bytes received by j from i, completion time (s after slot start, -1 if never)
//   last three values:          first slot's start time (s), events executed, frames transmitted
inline std::vector<double>
RunBroadcastSlots(const BroadcastSlots& cfg)
{
    using namespace ns3;
    const uint32_t n = cfg.x.size();
    const size_t nn = size_t(n) * n;
    const uint32_t slots = cfg.payloads.size();

    RngSeedManager::SetSeed(cfg.seed);
    RngSeedManager::SetRun(cfg.run);

    NodeContainer nodes;
    nodes.Create(n);

    WifiHelper wifi;
    wifi.SetStandard(WIFI_STANDARD_80211a);
    wifi.SetRemoteStationManager("ns3::ConstantRateWifiManager",
                                 "DataMode", StringValue(cfg.phyMode),
                                 "ControlMode", StringValue(cfg.phyMode),
                                 "NonUnicastMode", StringValue(cfg.phyMode));
    YansWifiChannelHelper channel = YansWifiChannelHelper::Default();
    YansWifiPhyHelper phy;
    phy.SetChannel(channel.Create());
    phy.Set("TxPowerStart", DoubleValue(cfg.txPowerDbm));
    phy.Set("TxPowerEnd", DoubleValue(cfg.txPowerDbm));
    WifiMacHelper mac;
    mac.SetType("ns3::AdhocWifiMac");
    NetDeviceContainer devices = wifi.Install(phy, mac, nodes);
    int64_t stream = 1;
    stream += wifi.AssignStreams(devices, stream);

    Ptr<ListPositionAllocator> where = CreateObject<ListPositionAllocator>();
    for (uint32_t i = 0; i < n; ++i)
    {
        where->Add(Vector(cfg.x[i], cfg.y[i], 0.0));
    }
    MobilityHelper mobility;
    mobility.SetPositionAllocator(where);
    mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel");
    mobility.Install(nodes);

    InternetStackHelper internet;
    internet.Install(nodes);
    Ipv4AddressHelper addresses;
    addresses.SetBase("10.1.0.0", "255.255.0.0");
    addresses.Assign(devices);

    const uint32_t nBlocks = 1 + 2 * slots;
    auto result = std::make_shared<std::vector<double>>(nBlocks * nn + 3, 0.0);
    for (uint32_t s = 0; s < slots; ++s)
    {
        std::fill(result->begin() + (2 * s + 2) * nn, result->begin() + (2 * s + 3) * nn, -1.0);
    }
    const double firstSlotS = kIdleProbeStartS + n * kIdleProbeSpacingS + 0.1;
    auto framesSent = std::make_shared<uint64_t>(0);
    for (uint32_t i = 0; i < n; ++i)
    {
        devices.Get(i)->GetObject<WifiNetDevice>()->GetPhy()->TraceConnectWithoutContext(
            "PhyTxBegin", Callback<void, Ptr<const Packet>, double>([framesSent](Ptr<const Packet>, double) { ++*framesSent; }));
    }

    // Receive sinks: count application bytes per (slot, sender, receiver).
    for (uint32_t j = 0; j < n; ++j)
    {
        Ptr<Socket> sink = Socket::CreateSocket(nodes.Get(j), UdpSocketFactory::GetTypeId());
        sink->Bind(InetSocketAddress(Ipv4Address::GetAny(), kPort));
        sink->SetRecvCallback(Callback<void, Ptr<Socket>>([=, &cfg](Ptr<Socket> socket) {
            while (Ptr<Packet> packet = socket->Recv())
            {
                DatagramTag tag;
                packet->CopyData(reinterpret_cast<uint8_t*>(&tag), sizeof(tag));
                if (tag.sender >= n || tag.sender == j)
                {
                    continue;
                }
                const size_t pair = size_t(tag.sender) * n + j;
                if (tag.slot == kIdleProbeSlot)
                {
                    (*result)[pair] = 1.0;
                    continue;
                }
                if (tag.slot >= slots)
                {
                    continue;
                }
                double& bytes = (*result)[(2 * tag.slot + 1) * nn + pair];
                bytes += packet->GetSize();
                double& done = (*result)[(2 * tag.slot + 2) * nn + pair];
                if (done < 0 && bytes >= cfg.payloads[tag.slot])
                {
                    done = Simulator::Now().GetSeconds() - (firstSlotS + tag.slot * cfg.slotPeriodS);
                }
            }
        }));
    }

    // Senders: one broadcast socket per device.
    std::vector<Ptr<Socket>> senders(n);
    for (uint32_t i = 0; i < n; ++i)
    {
        senders[i] = Socket::CreateSocket(nodes.Get(i), UdpSocketFactory::GetTypeId());
        senders[i]->SetAllowBroadcast(true);
        senders[i]->Connect(InetSocketAddress(Ipv4Address("255.255.255.255"), kPort));
    }

    // Idle probe: devices take turns sending one small datagram on a quiet channel.
    for (uint32_t i = 0; i < n; ++i)
    {
        Simulator::Schedule(Seconds(kIdleProbeStartS + i * kIdleProbeSpacingS),
                            &SendDatagram, senders[i], kIdleProbeSlot, i, 100u);
    }

    // Slots: each device sends ceil(payload / datagram) datagrams, paced, after a random start.
    const uint32_t header = sizeof(DatagramTag);
    const uint32_t perDatagram = std::max(cfg.datagramBytes, header);
    Ptr<UniformRandomVariable> jitter = CreateObject<UniformRandomVariable>();
    jitter->SetStream(stream++);
    for (uint32_t s = 0; s < slots; ++s)
    {
        const double slotStart = firstSlotS + s * cfg.slotPeriodS;
        const uint32_t count = (cfg.payloads[s] + perDatagram - 1) / perDatagram;
        for (uint32_t i = 0; i < n; ++i)
        {
            const double start = slotStart + jitter->GetValue(0.0, cfg.startJitterS);
            uint32_t left = cfg.payloads[s];
            for (uint32_t k = 0; k < count; ++k)
            {
                const uint32_t size = std::max(std::min(left, perDatagram), header);
                left -= std::min(left, perDatagram);
                Simulator::Schedule(Seconds(start + k * cfg.datagramIntervalS), &SendDatagram, senders[i], s, i, size);
            }
        }
    }

    Simulator::Stop(Seconds(firstSlotS + slots * cfg.slotPeriodS));
    Simulator::Run();
    std::vector<double> out(*result);
    out[nBlocks * nn] = firstSlotS;
    out[nBlocks * nn + 1] = double(Simulator::GetEventCount());
    out[nBlocks * nn + 2] = double(*framesSent);
    Simulator::Destroy();
    return out;
}

} // namespace nsdml
