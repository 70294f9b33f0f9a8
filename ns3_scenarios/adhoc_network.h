// 802.11a ad-hoc network stepped one exchange ("slot") at a time.
//
// One AdhocNetwork is one ns-3 simulation: it is built once, measures which
// pairs can hear each other on an idle channel (Probe), then runs slots in
// order (RunSlot): in every slot each device sends its message to its
// targets, and receive sinks in C++ record, per directed pair, the
// application bytes received and when the message became complete. Between
// calls the simulation keeps its state (positions, queues, ARP, TCP), so the
// same object serves the offline worker (all slots in a loop) and the online
// worker (one slot per request).
//
// Access point (accessPoint = true): the last node is an ApWifiMac, the others
// StaWifiMacs of its BSS, associated before the idle probe starts; devices
// always send unicast (to the access point), the access point follows
// `transport` (its downlink). Group frames a station sends are relayed by the
// access point, as in any BSS.
//
// Transports: "broadcast" (one UDP datagram reaches every device in range; no
// MAC retries), "unicast" (one UDP datagram per target; MAC ACKs and retries),
// "tcp" (one TCP connection per target and slot). Targets are the idle-probe
// neighbours, or `fanout` of them drawn at random per slot.
//
// Energy: every device has ns-3's WifiRadioEnergyModel on a BasicEnergySource
// (capacity kSourceJ, far more than any run spends: battery limits are applied
// per round by the testbed, so one trace serves every capacity). The model's
// TotalEnergyConsumption trace fires at each radio state change, before the
// state switches, so the time since the last change belongs to the state being
// left: that splits each radio's timeline into seconds per state (tx, rx, idle =
// idle + CCA busy + switching, all at the idle current, and sleep), which is what
// the helper reports (RadioSeconds); the testbed's ledger (messages/ledger.py)
// turns seconds into joules, and the sources' depletion is the check on it.
//
// Memory: at every radio state change WifiRadioEnergyModel (ns-3 3.44)
// reschedules its "battery empty" event, about 1e8 s ahead with kSourceJ:
// it cancels the old one, which ns-3 only marks, and a nested reschedule
// (GetMaximumTimeInState -> source update -> HandleEnergyChanged) leaves one
// more live event that nothing refers to. Both stay queued until their time,
// which no run reaches, so ns-3's MapScheduler grew by two events per state
// change (about 1 KB per frame heard; 17.8 GB for Mudag's 50-device trace).
// The simulator therefore runs on PrunedMapScheduler: MapScheduler's order,
// minus such events due after kPrunedBeyondS, a time no slot reaches.
//
// Messages (SendMessage / Advance): the core under every schedule. A message is
// device i sending B bytes to its targets from simulated time t; Advance runs
// the simulation on and answers which receiver held which message complete,
// and when. RunSlot is the synchronous-rounds schedule written on the same
// send and receive paths (the slot number is its messages' id); a barrier
// schedule (messages/schedules.py) drives SendMessage (or SendMessageTo, to
// chosen receivers) and Advance from Python.
//
// Radio sleep (radioSleep): a radio with nothing to send or receive sleeps in
// WifiRadioEnergyModel's SLEEP state (SleepCurrentA); a sleeping PHY receives
// nothing. Under RunSlot a device sleeps once its own message is out (its MAC
// queue empty, its PHY idle) and it holds every message addressed to it in the
// slot, until the next slot starts; SleepBetween lets a schedule put it to
// sleep over an interval of its own choosing, under the same conditions.
//
// Compiled at run time through the ns-3 Python bindings (cppyy); everything
// per packet stays in C++. Results come back as flat std::vector<double>s; a slot's is a SlotRecord laid
// out from the Python declaration SLOT_SCHEMA (ns3_scenarios/scenario.py).
#pragma once

#include "ns3/energy-module.h"
#include "ns3/multi-model-spectrum-channel.h"
#include "ns3/spectrum-phy.h"
#include "ns3/spectrum-signal-parameters.h"
#include "ns3/spectrum-transmit-filter.h"
#include "ns3/spectrum-wifi-helper.h"
#include "ns3/wifi-radio-energy-model-helper.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace nsdml
{

struct NetworkParams
{
    // Geometry and radio.
    std::vector<double> x;  // initial positions, metres
    std::vector<double> y;
    double sideM = 100.0;  // square the devices move in
    std::string phyMode = "OfdmRate24Mbps";
    double txPowerDbm = 16.0206;
    std::string rateControl = "constant";  // "constant" | "minstrel"
    std::string fading = "none";           // "none" | "nakagami"
    double nakagamiM = 1.0;
    // "yans": YansWifiChannel (a reception event at every PHY, however far); "spectrum": SpectrumWifiPhy on a
    // MultiModelSpectrumChannel with the same loss models; with maxLossDb > 0 a LossCutoffFilter on that
    // channel skips every receiver whose mean loss exceeds it (no event at all).
    std::string channel = "yans";
    double maxLossDb = 0.0;
    // Mobility.
    std::string mobility = "static";  // "static" | "random_walk" | "random_waypoint"
    double speedMps = 1.0;
    double pauseS = 0.0;
    double walkLegS = 10.0;  // random walk: a new direction every walkLegS seconds (and at the walls)
    // Traffic.
    std::string transport = "broadcast";  // "broadcast" | "unicast" | "tcp"
    bool accessPoint = false;             // infrastructure BSS: the last node is the access point
    uint32_t fanout = 0;                  // 0: every neighbour; k: k random neighbours per slot
    uint32_t datagramBytes = 1400;
    double slotPeriodS = 1.6;          // spacing of slot starts (deadline + drain)
    double deadlineS = 1.5;            // senders stop writing (TCP) at the deadline
    double startJitterS = 1.0;         // each device starts sending at U(0, jitter) after the slot start
    double datagramIntervalS = 0.005;  // UDP pacing between a device's consecutive datagrams
    // Radio energy (WifiRadioEnergyModel currents, BasicEnergySource voltage).
    double supplyVoltageV = 3.0;
    double txCurrentA = 0.380;
    double rxCurrentA = 0.313;
    double idleCurrentA = 0.273;  // also CCA busy and switching: "idle" is one state of the ledger
    double sleepCurrentA = 0.033;
    bool radioSleep = false;  // RunSlot puts a radio with nothing left to send or receive to sleep
    // A jammer (jammerIntervalS > 0): one more 802.11a radio at (jammerX, jammerY) metres, not a device, queueing a
    // junk broadcast frame of datagramBytes every jammerIntervalS from the first slot on; it senses the carrier
    // as every 802.11 radio does. Receivers drop its frames (their tag's sender is no device).
    double jammerX = 0.0;
    double jammerY = 0.0;
    double jammerIntervalS = 0.0;
    // Babblers: these devices also queue a junk broadcast frame every babbleIntervalS from the first slot on,
    // beside their messages, through their own radio (their joules are theirs).
    std::vector<uint32_t> babblers;
    double babbleIntervalS = 0.0;
    // RNG.
    uint32_t seed = 1;
    uint32_t run = 1;
    uint32_t chunk = 0;  // trace chunk index: shifts the non-mobility streams by chunk * kChunkStreamStride
    // Event queue: PrunedMapScheduler (below), or "ns3::MapScheduler" to check that pruning changes nothing.
    std::string scheduler = "nsdml::PrunedMapScheduler";
    // The slot record's layout: field names and sizes in doubles, from ns3_scenarios/scenario.py's
    // SLOT_SCHEMA (its one declaration); RunSlot fills each field by name.
    std::vector<std::string> slotFields;
    std::vector<uint32_t> slotSizes;
    // The message core's arrival record: field names from ARRIVAL_FIELDS (ns3_scenarios/scenario.py), one
    // double each; CreditMessage fills them by name.
    std::vector<std::string> arrivalFields;
};

// One slot's results as one flat vector of doubles, laid out by NetworkParams::slotFields: RunSlot asks for a
// field by name and writes into it, so no offset is computed here and Python decodes the vector by the same
// declaration. Asking for a field the schema does not declare, or for the wrong size, throws.
class SlotRecord
{
  public:
    SlotRecord(const std::vector<std::string>& names, const std::vector<uint32_t>& sizes)
    {
        if (names.size() != sizes.size())
        {
            throw std::invalid_argument("SlotRecord: one size per field");
        }
        size_t offset = 0;
        for (size_t k = 0; k < names.size(); ++k)
        {
            m_fields[names[k]] = {offset, sizes[k]};
            offset += sizes[k];
        }
        values.assign(offset, 0.0);
    }

    // The field `name`, which must hold `size` doubles.
    double* Field(const std::string& name, size_t size)
    {
        const auto found = m_fields.find(name);
        if (found == m_fields.end() || found->second.second != size)
        {
            throw std::invalid_argument("SlotRecord: no field " + name + " of " + std::to_string(size) +
                                        " values in the slot schema");
        }
        return values.data() + found->second.first;
    }

    std::vector<double> values;

  private:
    std::map<std::string, std::pair<size_t, size_t>> m_fields;
};

// Carried in the first bytes of every UDP datagram and of every TCP stream.
// id: the slot under RunSlot, kFirstMessageId + n for the n-th message of SendMessage.
struct MessageTag
{
    uint32_t id;
    uint32_t sender;
};

constexpr uint32_t kHeaderBytes = sizeof(MessageTag);
constexpr uint32_t kProbeSlot = 0xFFFFFFFFu;
constexpr uint32_t kNoSlot = 0xFFFFFFFEu;
constexpr uint32_t kFirstMessageId = 0x80000000u;  // slots stay below it
constexpr double kSleepRetryS = 0.001;             // a radio still busy when it may sleep is asked again after this
constexpr uint32_t kProbeBytes = 100;
constexpr double kProbeStartS = 0.05;
constexpr double kProbeSpacingS = 0.001;  // ten times one probe frame: the probe sees an idle channel
constexpr double kSlotLeadS = 0.1;        // quiet time between the last probe and the first slot
constexpr double kAssociationS = 1.0;     // access point: stations hear beacons (every 102.4 ms) and associate
constexpr uint16_t kUdpPort = 9;
constexpr double kSourceJ = 1e8;  // never the limit (see the top of this file); below 1e9 so that a sleeping radio's
                                 // time to empty it (1e9 s at 0.1 W) fits ns-3's int64 nanoseconds
constexpr uint32_t kRadioStates = 4;  // joules per device as tx, rx, idle (idle + CCA busy + switching), sleep
constexpr uint16_t kTcpPort = 10;
// Fixed RNG stream bases per component, so switching e.g. mobility on does not
// shift the draws of the channel or of the MACs.
constexpr int64_t kWifiStreams = 0;
constexpr int64_t kChannelStreams = 100000;
constexpr int64_t kInternetStreams = 200000;
constexpr int64_t kMobilityStreams = 300000;
constexpr int64_t kWaypointStreams = 350000;
constexpr int64_t kTrafficStreams = 400000;
constexpr int64_t kJammerStreams = 450000;  // the jammer's MAC and stack: the devices' draws stay as without it
constexpr uint32_t kJunkId = 0xFFFFFFFDu;
// A trace chunk (NetworkParams::chunk) moves every stream but the mobility's this far per chunk index, so each
// chunk draws its own backoffs, jitter and fading while its devices follow the serial simulation's paths.
constexpr int64_t kChunkStreamStride = 1000000;

constexpr double kPrunedBeyondS = 1e7;  // simulated seconds; RunUntil refuses to go past it

// ns-3's MapScheduler (events ordered by time, then uid) that, whenever the
// queue has doubled since the last sweep, drops the events due after
// kPrunedBeyondS that are cancelled or that no EventId refers to any more (the
// queue holds the only reference, so nothing can cancel or remove them). The
// simulation never reaches them, so none would run or be counted by
// Simulator::GetEventCount: the simulation is unchanged, only their memory is
// returned. A live event someone still holds stays queued, so a later
// Simulator::Remove finds it.
class PrunedMapScheduler : public ns3::Scheduler
{
  public:
    static ns3::TypeId GetTypeId()
    {
        static ns3::TypeId tid = ns3::TypeId("nsdml::PrunedMapScheduler")
                                     .SetParent<ns3::Scheduler>()
                                     .SetGroupName("Core")
                                     .AddConstructor<PrunedMapScheduler>();
        return tid;
    }

    void Insert(const Event& ev) override
    {
        // Sweep before queueing: the simulator makes ev's EventId only after Insert returns.
        if (m_events.size() >= m_sweepAt)
        {
            Sweep();
        }
        m_events.emplace(ev.key, ev.impl);
    }

    bool IsEmpty() const override
    {
        return m_events.empty();
    }

    Event PeekNext() const override
    {
        const auto first = m_events.begin();
        return Event{first->second, first->first};
    }

    Event RemoveNext() override
    {
        const Event next = PeekNext();
        m_events.erase(m_events.begin());
        return next;
    }

    void Remove(const Event& ev) override
    {
        m_events.erase(ev.key);
    }

    // Events pruned so far in this process (every simulation it ran).
    static uint64_t Pruned()
    {
        return s_pruned;
    }

  private:
    void Sweep()
    {
        const auto beyond = m_events.lower_bound(EventKey{uint64_t(ns3::Seconds(kPrunedBeyondS).GetTimeStep()), 0, 0});
        for (auto it = beyond; it != m_events.end();)
        {
            if (it->second->IsCancelled() || it->second->GetReferenceCount() == 1)
            {
                it->second->Unref();  // the queue's reference, released as the simulator does after running one
                it = m_events.erase(it);
                ++s_pruned;
            }
            else
            {
                ++it;
            }
        }
        m_sweepAt = std::max<size_t>(2 * m_events.size(), 4096);
    }

    std::map<EventKey, ns3::EventImpl*> m_events;
    size_t m_sweepAt = 4096;
    static inline uint64_t s_pruned = 0;
};

// Receptions only where they can matter: a SpectrumTransmitFilter that drops, before any event is scheduled,
// every receiver whose mean path loss (the LogDistance model alone, without fading, which would spend random
// draws) exceeds maxLossDb. The channel's own MaxLossDb attribute is checked only inside the reception event, so
// it saves the PHY's work but not the event (ns-3 3.44 MultiModelSpectrumChannel::StartRx).
class LossCutoffFilter : public ns3::SpectrumTransmitFilter
{
  public:
    static ns3::TypeId GetTypeId()
    {
        static ns3::TypeId tid = ns3::TypeId("nsdml::LossCutoffFilter")
                                     .SetParent<ns3::SpectrumTransmitFilter>()
                                     .SetGroupName("Spectrum")
                                     .AddConstructor<LossCutoffFilter>();
        return tid;
    }

    void Set(ns3::Ptr<ns3::PropagationLossModel> meanLoss, double maxLossDb)
    {
        m_meanLoss = meanLoss;
        m_maxLossDb = maxLossDb;
    }

  private:
    bool DoFilter(ns3::Ptr<const ns3::SpectrumSignalParameters> params,
                  ns3::Ptr<const ns3::SpectrumPhy> receiverPhy) override
    {
        const ns3::Ptr<ns3::MobilityModel> from = params->txPhy->GetMobility();
        const ns3::Ptr<ns3::MobilityModel> to = receiverPhy->GetMobility();
        return from && to && -m_meanLoss->CalcRxPower(0.0, from, to) > m_maxLossDb;
    }

    int64_t DoAssignStreams(int64_t) override
    {
        return 0;
    }

    ns3::Ptr<ns3::PropagationLossModel> m_meanLoss;
    double m_maxLossDb = 0.0;
};

class AdhocNetwork
{
  public:
    explicit AdhocNetwork(const NetworkParams& params)
        : m_p(params),
          m_n(params.x.size()),
          m_probeCounts(size_t(m_n) * m_n, 0.0),
          m_neighbours(size_t(m_n) * m_n, 0),
          m_stateS(size_t(m_n) * kRadioStates, 0.0),
          m_changedS(m_n, 0.0),
          m_retries(m_n, 0.0)
    {
        Build();
    }

    ~AdhocNetwork()
    {
        Destroy();
    }

    // Ends the simulation (ns-3's simulator is a per-process singleton: one network at a time).
    void Destroy()
    {
        if (!m_alive)
        {
            return;
        }
        for (auto& flow : m_tcpFlows)
        {
            Release(*flow);
        }
        m_tcpFlows.clear();
        m_jammerSocket = ns3::Ptr<ns3::Socket>();
        m_jammerRadio = ns3::Ptr<ns3::WifiRadioEnergyModel>();
        ns3::Simulator::Destroy();
        m_senders.clear();
        m_phys.clear();
        m_queues.clear();
        m_radios.clear();
        m_sources.clear();
        m_alive = false;
    }

    // Idle probe: `repeats` times, every device in turn broadcasts one small
    // datagram on an otherwise quiet channel. Returns, at i*N+j, how many of
    // i's probes j received. Slots start kSlotLeadS after the last probe.
    std::vector<double> Probe(uint32_t repeats)
    {
        using namespace ns3;
        const double start = Simulator::Now().GetSeconds() + (m_p.accessPoint ? kAssociationS : kProbeStartS);
        m_slot = kNoSlot;
        for (uint32_t k = 0; k < repeats; ++k)
        {
            for (uint32_t i = 0; i < m_n; ++i)
            {
                const double at = start + (double(k) * m_n + i) * kProbeSpacingS;
                Simulator::Schedule(Until(at), [this, i]() { SendUdp(kProbeSlot, i, Ipv4Address::GetBroadcast(), kProbeBytes); });
            }
        }
        RunUntil(start + double(repeats) * m_n * kProbeSpacingS + kSlotLeadS);
        m_firstSlotS = Simulator::Now().GetSeconds();
        if (m_jammerSocket)
        {
            Jam(m_jammerSocket, m_n, m_p.jammerIntervalS);  // from the first slot on: the probe had a quiet channel
        }
        for (uint32_t babbler : m_p.babblers)
        {
            Jam(m_senders.at(babbler), babbler, m_p.babbleIntervalS);
        }
        return m_probeCounts;
    }

    // Who each device addresses: mask[i*N+j] != 0 if j is i's neighbour.
    void SetNeighbours(const std::vector<int>& mask)
    {
        for (size_t k = 0; k < m_neighbours.size(); ++k)
        {
            m_neighbours[k] = mask.at(k) != 0 && k / m_n != k % m_n;
        }
    }

    double FirstSlotS() const
    {
        return m_firstSlotS;
    }

    // Simulate slot `slot` (slots must come in increasing order; skipped slots
    // just let time pass), each device i sending payloads[i] bytes. The result is the slot's SlotRecord
    // (the fields of SLOT_SCHEMA; pairs at i*N+j for sender i, receiver j; a completion time of -1: never).
    std::vector<double> RunSlot(uint32_t slot, const std::vector<uint32_t>& payloads)
    {
        using namespace ns3;
        const size_t nn = size_t(m_n) * m_n;
        const double slotStart = m_firstSlotS + slot * m_p.slotPeriodS;
        if (payloads.size() != m_n || slotStart + 1e-9 < Simulator::Now().GetSeconds())
        {
            throw std::invalid_argument("RunSlot: one payload per device, slots in increasing order");
        }
        RunUntil(slotStart);
        WakeAll();

        SlotRecord out(m_p.slotFields, m_p.slotSizes);
        m_secondsAtStart = RadioSeconds();
        const std::vector<double> depletedBefore = SourceDepletionJ();
        double* positions = out.Field("positions", 2 * size_t(m_n));
        for (uint32_t i = 0; i < m_n; ++i)
        {
            const Vector where = m_nodes.Get(i)->GetObject<MobilityModel>()->GetPosition();
            positions[2 * i] = where.x;
            positions[2 * i + 1] = where.y;
        }
        m_rxBytes.assign(nn, 0.0);
        m_done.assign(nn, -1.0);
        m_payloads = payloads;
        m_slot = slot;
        m_slotStartS = slotStart;
        m_frames = 0;
        m_airBytes = 0;
        m_slotRetries = 0;
        const uint64_t eventsBefore = Simulator::GetEventCount();

        double* intended = out.Field("intended", nn);
        m_sendsLeft.assign(m_n, 0);
        m_waitingFor.assign(m_n, 0);
        m_intended.assign(nn, 0);
        m_open = 0;
        m_secondsAtEnd.clear();
        for (uint32_t i = 0; i < m_n; ++i)
        {
            const double start = slotStart + m_jitter->GetValue(0.0, m_p.startJitterS);
            const std::vector<uint32_t> targets = Targets(i);
            if (payloads[i] == 0)
            {
                continue;
            }
            for (uint32_t j : targets)
            {
                intended[size_t(i) * m_n + j] = 1.0;
                m_intended[size_t(i) * m_n + j] = 1;
                ++m_open;
                ++m_waitingFor[j];
            }
            ScheduleMessage(slot, i, start, payloads[i], targets);
        }
        if (m_p.radioSleep)
        {
            for (uint32_t i = 0; i < m_n; ++i)
            {
                MaybeSleepAfterSlot(i);  // a device that neither sends nor waits sleeps at once
            }
        }
        if (m_p.transport == "tcp")
        {
            Simulator::Schedule(Until(slotStart + m_p.deadlineS), [this]() { StopTcpWriters(); });
        }
        // The exchange's clock stops when its last addressed message completes, or at the deadline (the
        // runner's RoundLinks.duration_s): the radios' seconds are cut there and at the deadline. The drain
        // after the deadline only lets the channel fall quiet before the next slot; no clock counts it.
        RunUntil(slotStart + m_p.deadlineS);
        const std::vector<double> atDeadline = RadioSeconds();
        const std::vector<double> depletedAtDeadline = SourceDepletionJ();
        if (m_secondsAtEnd.empty())
        {
            MarkClockEnd();
        }
        double* toEnd = out.Field("radio_s", atDeadline.size());
        double* toDeadline = out.Field("radio_deadline_s", atDeadline.size());
        for (size_t k = 0; k < atDeadline.size(); ++k)
        {
            toEnd[k] = m_secondsAtEnd[k] - m_secondsAtStart[k];
            toDeadline[k] = atDeadline[k] - m_secondsAtStart[k];
        }
        double* depleted = out.Field("source_deadline_j", m_n);
        for (uint32_t i = 0; i < m_n; ++i)
        {
            depleted[i] = depletedAtDeadline[i] - depletedBefore[i];
        }
        *out.Field("clock_end_s", 1) = m_clockEndS;
        RunUntil(slotStart + m_p.slotPeriodS);
        m_slot = kNoSlot;

        std::copy(m_rxBytes.begin(), m_rxBytes.end(), out.Field("rx_bytes", nn));
        std::copy(m_done.begin(), m_done.end(), out.Field("done_s", nn));
        *out.Field("air_bytes", 1) = double(m_airBytes);
        *out.Field("frames", 1) = double(m_frames);
        *out.Field("retries", 1) = double(m_slotRetries);
        m_lastSlotEvents = Simulator::GetEventCount() - eventsBefore;
        *out.Field("events", 1) = double(m_lastSlotEvents);
        return out.values;
    }

    // The message core: device `sender` sends `bytes` to its targets (its neighbours) from simulated time
    // `atS` (not before now). Returns the message's number n (0, 1, ...); Advance reports its arrivals.
    uint32_t SendMessage(uint32_t sender, double atS, uint32_t bytes)
    {
        CheckMessage("SendMessage", sender, bytes);
        return QueueMessage(sender, atS, bytes, Targets(sender), false);
    }

    // The message core to chosen receivers: unicast copies to `targets` (devices other than the sender; an
    // empty list sends nothing), each acknowledged, whatever the scenario's transport. A message to one chosen
    // peer is what pairwise algorithms send.
    uint32_t SendMessageTo(uint32_t sender, double atS, uint32_t bytes, const std::vector<uint32_t>& targets)
    {
        CheckMessage("SendMessageTo", sender, bytes);
        for (uint32_t j : targets)
        {
            if (j >= m_n || j == sender || (m_p.accessPoint && j + 1 == m_n))
            {
                throw std::invalid_argument("SendMessageTo: every target is a device other than the sender");
            }
        }
        return QueueMessage(sender, atS, bytes, targets, true);
    }

    // Runs the simulation until `untilS`, or only until the first event that completes a message, and returns
    // the arrivals since the last call, flat: one record per arrival laid out by NetworkParams::arrivalFields
    // (message number, receiver, simulated time its last byte arrived). Stopping at an arrival lets a schedule answer it at its exact time (NowS).
    std::vector<double> Advance(double untilS)
    {
        using namespace ns3;
        const double until = std::max(untilS, Simulator::Now().GetSeconds());
        if (until >= kPrunedBeyondS)
        {
            throw std::runtime_error("simulated time past kPrunedBeyondS: raise it in adhoc_network.h");
        }
        if (m_arrivals.empty())
        {
            m_stopAtArrival = true;
            EventId stop = Simulator::Schedule(Until(until), []() { Simulator::Stop(); });
            Simulator::Run();
            Simulator::Cancel(stop);
            m_stopAtArrival = false;
        }
        std::vector<double> out;
        out.swap(m_arrivals);
        return out;
    }

    double NowS() const
    {
        return ns3::Simulator::Now().GetSeconds();
    }

    // Device i's radio sleeps from `fromS` (once its MAC queue is empty and its PHY idle) until `untilS`.
    void SleepBetween(uint32_t i, double fromS, double untilS)
    {
        using namespace ns3;
        if (i >= m_n || untilS <= fromS)
        {
            return;
        }
        const double from = std::max(fromS, Simulator::Now().GetSeconds());
        Simulator::Schedule(Until(from), [this, i, untilS]() { TrySleep(i, untilS); });
        Simulator::Schedule(Until(untilS), [this, i]() { Wake(i); });
    }

    // Slots first .. first + count - 1 in one call, keeping only the event count: the simulation without
    // Python between slots, the reference `make bench-ns3` holds the stepped workers against.
    double RunSlotsInCpp(uint32_t first, uint32_t count, const std::vector<uint32_t>& payloads)
    {
        double events = 0.0;
        for (uint32_t slot = first; slot < first + count; ++slot)
        {
            RunSlot(slot, payloads);
            events += double(m_lastSlotEvents);
        }
        return events;
    }

    // Joules each device's energy source has lost since the start: the check on RadioSeconds' split.
    std::vector<double> SourceDepletionJ() const
    {
        std::vector<double> out(m_n, 0.0);
        for (uint32_t i = 0; i < m_n; ++i)
        {
            out[i] = m_sources[i]->GetInitialEnergy() - m_sources[i]->GetRemainingEnergy();
        }
        return out;
    }

    // MAC retransmissions each device has made so far: unicast data frames sent again after a missing ACK.
    std::vector<double> Retries() const
    {
        return m_retries;
    }

    // Seconds each radio has spent so far per state (tx, rx, idle, sleep), including the state it is in now;
    // per device they sum to the simulated time since the radios were installed. Reads no energy model, so
    // reading changes nothing in the simulation.
    std::vector<double> RadioSeconds() const
    {
        std::vector<double> out(m_stateS);
        const double now = ns3::Simulator::Now().GetSeconds();
        for (uint32_t i = 0; i < m_n; ++i)
        {
            out[size_t(i) * kRadioStates + StateIndex(m_radios[i]->GetCurrentState())] += now - m_changedS[i];
        }
        return out;
    }

  private:
    void MarkClockEnd()
    {
        m_secondsAtEnd = RadioSeconds();
        m_clockEndS = ns3::Simulator::Now().GetSeconds() - m_slotStartS;
    }

    static uint32_t StateIndex(ns3::WifiPhyState state)
    {
        using ns3::WifiPhyState;
        return state == WifiPhyState::TX ? 0 : state == WifiPhyState::RX ? 1 : state == WifiPhyState::SLEEP ? 3 : 2;
    }

    // The radio's currents in each state (every radio of the scenario, the jammer's too).
    ns3::WifiRadioEnergyModelHelper RadioEnergy() const
    {
        using namespace ns3;
        WifiRadioEnergyModelHelper radio;
        radio.Set("TxCurrentA", DoubleValue(m_p.txCurrentA));
        radio.Set("RxCurrentA", DoubleValue(m_p.rxCurrentA));
        radio.Set("IdleCurrentA", DoubleValue(m_p.idleCurrentA));
        radio.Set("CcaBusyCurrentA", DoubleValue(m_p.idleCurrentA));
        radio.Set("SwitchingCurrentA", DoubleValue(m_p.idleCurrentA));
        radio.Set("SleepCurrentA", DoubleValue(m_p.sleepCurrentA));
        return radio;
    }

    void InstallEnergy(const ns3::NetDeviceContainer& devices)
    {
        using namespace ns3;
        BasicEnergySourceHelper source;
        source.Set("BasicEnergySourceInitialEnergyJ", DoubleValue(kSourceJ));
        source.Set("BasicEnergySupplyVoltageV", DoubleValue(m_p.supplyVoltageV));
        energy::EnergySourceContainer sources = source.Install(m_nodes);
        m_sources.assign(sources.Begin(), sources.End());
        WifiRadioEnergyModelHelper radio = RadioEnergy();
        energy::DeviceEnergyModelContainer models = radio.Install(devices, sources);
        m_radios.resize(m_n);
        for (uint32_t i = 0; i < m_n; ++i)
        {
            m_radios[i] = DynamicCast<WifiRadioEnergyModel>(models.Get(i));
            // Fires inside ChangeState before the state switches: the time since the last change is the state
            // being left's (a change after no time adds no energy and fires nothing, and adds no time).
            m_radios[i]->TraceConnectWithoutContext(
                "TotalEnergyConsumption", Callback<void, double, double>([this, i](double, double) {
                    const double now = Simulator::Now().GetSeconds();
                    m_stateS[size_t(i) * kRadioStates + StateIndex(m_radios[i]->GetCurrentState())] +=
                        now - m_changedS[i];
                    m_changedS[i] = now;
                }));
        }
    }

    struct TcpFlow
    {
        ns3::Ptr<ns3::Socket> socket;
        MessageTag tag;
        uint32_t left = 0;
        bool started = false;
        bool stopped = false;
    };

    struct TcpReceive
    {
        MessageTag tag{kNoSlot, 0};
        uint8_t header[kHeaderBytes];
        uint32_t headerBytes = 0;
        uint64_t total = 0;
        uint64_t credited = 0;
    };

    static ns3::Time Until(double atS)
    {
        return ns3::Seconds(atS) - ns3::Simulator::Now();
    }

    static void RunUntil(double atS)
    {
        if (atS >= kPrunedBeyondS)
        {
            throw std::runtime_error("simulated time past kPrunedBeyondS: raise it in adhoc_network.h");
        }
        ns3::Simulator::Stop(Until(atS));
        ns3::Simulator::Run();
    }

    void Build()
    {
        using namespace ns3;
        PrunedMapScheduler::GetTypeId();  // registers the name
        Simulator::SetScheduler(ObjectFactory(m_p.scheduler));
        RngSeedManager::SetSeed(m_p.seed);
        RngSeedManager::SetRun(m_p.run);
        m_nodes.Create(m_n);

        WifiHelper wifi;
        wifi.SetStandard(WIFI_STANDARD_80211a);
        if (m_p.rateControl == "minstrel")
        {
            wifi.SetRemoteStationManager("ns3::MinstrelWifiManager", "NonUnicastMode", StringValue(m_p.phyMode));
        }
        else
        {
            wifi.SetRemoteStationManager("ns3::ConstantRateWifiManager",
                                         "DataMode", StringValue(m_p.phyMode),
                                         "ControlMode", StringValue(m_p.phyMode),
                                         "NonUnicastMode", StringValue(m_p.phyMode));
        }
        // Both channels: ns-3's default LogDistance loss (exponent 3, 46.6777 dB at 1 m), Nakagami fading
        // after it if asked, constant-speed delay; the fading draws come from kChannelStreams on either.
        Ptr<LogDistancePropagationLossModel> loss = CreateObject<LogDistancePropagationLossModel>();
        if (m_p.fading == "nakagami")
        {
            Ptr<NakagamiPropagationLossModel> nakagami = CreateObject<NakagamiPropagationLossModel>();
            nakagami->SetAttribute("m0", DoubleValue(m_p.nakagamiM));
            nakagami->SetAttribute("m1", DoubleValue(m_p.nakagamiM));
            nakagami->SetAttribute("m2", DoubleValue(m_p.nakagamiM));
            loss->SetNext(nakagami);
        }
        loss->AssignStreams(kChannelStreams + Shift());
        Ptr<ConstantSpeedPropagationDelayModel> delay = CreateObject<ConstantSpeedPropagationDelayModel>();
        std::unique_ptr<WifiPhyHelper> phyHelper;
        if (m_p.channel == "spectrum")
        {
            Ptr<MultiModelSpectrumChannel> channel = CreateObject<MultiModelSpectrumChannel>();
            channel->AddPropagationLossModel(loss);
            channel->SetPropagationDelayModel(delay);
            if (m_p.maxLossDb > 0.0)
            {
                Ptr<LossCutoffFilter> cutoff = CreateObject<LossCutoffFilter>();
                cutoff->Set(CreateObject<LogDistancePropagationLossModel>(), m_p.maxLossDb);
                channel->AddSpectrumTransmitFilter(cutoff);
            }
            auto spectrum = std::make_unique<SpectrumWifiPhyHelper>();
            spectrum->SetChannel(channel);
            phyHelper = std::move(spectrum);
        }
        else
        {
            Ptr<YansWifiChannel> channel = CreateObject<YansWifiChannel>();
            channel->SetPropagationLossModel(loss);
            channel->SetPropagationDelayModel(delay);
            auto yans = std::make_unique<YansWifiPhyHelper>();
            yans->SetChannel(channel);
            phyHelper = std::move(yans);
        }
        WifiPhyHelper& phy = *phyHelper;
        phy.Set("TxPowerStart", DoubleValue(m_p.txPowerDbm));
        phy.Set("TxPowerEnd", DoubleValue(m_p.txPowerDbm));
        WifiMacHelper mac;
        NetDeviceContainer devices;
        if (m_p.accessPoint)
        {
            NodeContainer stations;
            for (uint32_t i = 0; i + 1 < m_n; ++i)
            {
                stations.Add(m_nodes.Get(i));
            }
            const Ssid ssid("nsdml");
            mac.SetType("ns3::StaWifiMac", "Ssid", SsidValue(ssid));
            devices.Add(wifi.Install(phy, mac, stations));
            mac.SetType("ns3::ApWifiMac", "Ssid", SsidValue(ssid));
            devices.Add(wifi.Install(phy, mac, m_nodes.Get(m_n - 1)));
        }
        else
        {
            mac.SetType("ns3::AdhocWifiMac");
            devices = wifi.Install(phy, mac, m_nodes);
        }
        wifi.AssignStreams(devices, kWifiStreams + Shift());
        InstallEnergy(devices);
        for (uint32_t i = 0; i < m_n; ++i)
        {
            Ptr<WifiNetDevice> device = DynamicCast<WifiNetDevice>(devices.Get(i));
            m_phys.push_back(device->GetPhy());
            Ptr<Txop> txop = device->GetMac()->GetTxop();
            m_queues.push_back(txop ? txop->GetWifiMacQueue() : device->GetMac()->GetQosTxop(AC_BE)->GetWifiMacQueue());
        }

        InstallMobility();
        NetDeviceContainer jammer;
        if (m_p.jammerIntervalS > 0.0)
        {
            jammer = BuildJammer(wifi, phy, mac);
        }

        InternetStackHelper internet;
        internet.Install(m_nodes);
        internet.AssignStreams(m_nodes, kInternetStreams + Shift());
        if (jammer.GetN() > 0)
        {
            internet.Install(m_jammerNode);
            internet.AssignStreams(m_jammerNode, kJammerStreams + 100 + Shift());
        }
        Ipv4AddressGenerator::Reset();
        Ipv4AddressHelper addresses;
        addresses.SetBase("10.1.0.0", "255.255.0.0");
        m_addresses = addresses.Assign(devices);
        if (jammer.GetN() > 0)
        {
            addresses.Assign(jammer);
        }
        // Static ARP entries: a burst to a new neighbour would otherwise lose all but 3 packets.
        NeighborCacheHelper().PopulateNeighborCache();

        for (uint32_t i = 0; i < m_n; ++i)
        {
            devices.Get(i)->GetObject<WifiNetDevice>()->GetPhy()->TraceConnectWithoutContext(
                "PhyTxBegin", Callback<void, Ptr<const Packet>, double>([this](Ptr<const Packet> frame, double) {
                    ++m_frames;
                    m_airBytes += frame->GetSize();
                }));
            // A unicast data frame whose ACK did not come is sent again, unless it was the last attempt.
            Ptr<WifiRemoteStationManager> stations =
                devices.Get(i)->GetObject<WifiNetDevice>()->GetRemoteStationManager();
            stations->TraceConnectWithoutContext("MacTxDataFailed", Callback<void, Mac48Address>([this, i](Mac48Address) {
                m_retries[i] += 1.0;
                ++m_slotRetries;
            }));
            stations->TraceConnectWithoutContext("MacTxFinalDataFailed",
                                                 Callback<void, Mac48Address>([this, i](Mac48Address) {
                                                     m_retries[i] -= 1.0;
                                                     --m_slotRetries;
                                                 }));
        }
        InstallSockets();
        if (jammer.GetN() > 0)
        {
            m_jammerSocket = Socket::CreateSocket(m_jammerNode.Get(0), UdpSocketFactory::GetTypeId());
            m_jammerSocket->SetAllowBroadcast(true);
            m_jammerSocket->Bind();
            jammer.Get(0)->GetObject<WifiNetDevice>()->GetPhy()->TraceConnectWithoutContext(
                "PhyTxBegin", Callback<void, Ptr<const Packet>, double>([this](Ptr<const Packet>, double) {
                    ++m_junkFrames;
                }));
        }

        m_jitter = CreateObject<UniformRandomVariable>();
        m_jitter->SetStream(kTrafficStreams + Shift());
        m_pick = CreateObject<UniformRandomVariable>();
        m_pick->SetStream(kTrafficStreams + 1 + Shift());
        m_alive = true;
    }

    ns3::NetDeviceContainer BuildJammer(ns3::WifiHelper& wifi, ns3::WifiPhyHelper& phy, ns3::WifiMacHelper& mac)
    {
        using namespace ns3;
        m_jammerNode.Create(1);
        mac.SetType("ns3::AdhocWifiMac");
        NetDeviceContainer device = wifi.Install(phy, mac, m_jammerNode);
        wifi.AssignStreams(device, kJammerStreams + Shift());
        BasicEnergySourceHelper source;
        source.Set("BasicEnergySourceInitialEnergyJ", DoubleValue(kSourceJ));
        source.Set("BasicEnergySupplyVoltageV", DoubleValue(m_p.supplyVoltageV));
        energy::EnergySourceContainer sources = source.Install(m_jammerNode);
        WifiRadioEnergyModelHelper radio = RadioEnergy();
        m_jammerRadio = DynamicCast<WifiRadioEnergyModel>(radio.Install(device, sources).Get(0));
        MobilityHelper mobility;
        mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel");
        mobility.Install(m_jammerNode);
        m_jammerNode.Get(0)->GetObject<MobilityModel>()->SetPosition(Vector(m_p.jammerX, m_p.jammerY, 0.0));
        return device;
    }

    // One junk frame from `socket` now (tagged as junk from `sender`: receivers drop it), the next one
    // `intervalS` later, for as long as the simulation runs.
    void Jam(ns3::Ptr<ns3::Socket> socket, uint32_t sender, double intervalS)
    {
        std::vector<uint8_t> buffer(m_p.datagramBytes, 0);
        MessageTag tag{kJunkId, sender};
        std::memcpy(buffer.data(), &tag, sizeof(tag));
        socket->SendTo(ns3::Create<ns3::Packet>(buffer.data(), buffer.size()), 0,
                       ns3::InetSocketAddress(ns3::Ipv4Address::GetBroadcast(), kUdpPort));
        ns3::Simulator::Schedule(ns3::Seconds(intervalS), [this, socket, sender, intervalS]() {
            Jam(socket, sender, intervalS);
        });
    }

  public:
    // The jammer's frames on the air so far and its radio's joules (0 without a jammer).
    double JunkFrames() const
    {
        return double(m_junkFrames);
    }

    double JammerEnergyJ() const
    {
        return m_jammerRadio ? m_jammerRadio->GetTotalEnergyConsumption() : 0.0;
    }

  private:
    int64_t Shift() const
    {
        return int64_t(m_p.chunk) * kChunkStreamStride;
    }

    void InstallMobility()
    {
        using namespace ns3;
        Ptr<ListPositionAllocator> where = CreateObject<ListPositionAllocator>();
        for (uint32_t i = 0; i < m_n; ++i)
        {
            where->Add(Vector(m_p.x[i], m_p.y[i], 0.0));
        }
        MobilityHelper mobility;
        mobility.SetPositionAllocator(where);
        const std::string speed = "ns3::ConstantRandomVariable[Constant=" + std::to_string(m_p.speedMps) + "]";
        if (m_p.mobility == "random_walk")
        {
            mobility.SetMobilityModel("ns3::RandomWalk2dMobilityModel",
                                      "Bounds", RectangleValue(Rectangle(0.0, m_p.sideM, 0.0, m_p.sideM)),
                                      "Speed", StringValue(speed),
                                      "Mode", StringValue("Time"),
                                      "Time", TimeValue(Seconds(m_p.walkLegS)));
        }
        else if (m_p.mobility == "random_waypoint")
        {
            Ptr<RandomRectanglePositionAllocator> waypoints = CreateObject<RandomRectanglePositionAllocator>();
            const std::string side = "ns3::UniformRandomVariable[Min=0.0|Max=" + std::to_string(m_p.sideM) + "]";
            waypoints->SetAttribute("X", StringValue(side));
            waypoints->SetAttribute("Y", StringValue(side));
            waypoints->AssignStreams(kWaypointStreams);
            mobility.SetMobilityModel("ns3::RandomWaypointMobilityModel",
                                      "Speed", StringValue(speed),
                                      "Pause", StringValue("ns3::ConstantRandomVariable[Constant=" +
                                                           std::to_string(m_p.pauseS) + "]"),
                                      "PositionAllocator", PointerValue(waypoints));
        }
        else
        {
            mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel");
        }
        mobility.Install(m_nodes);
        mobility.AssignStreams(m_nodes, kMobilityStreams);
    }

    void InstallSockets()
    {
        using namespace ns3;
        m_senders.resize(m_n);
        for (uint32_t j = 0; j < m_n; ++j)
        {
            Ptr<Socket> sink = Socket::CreateSocket(m_nodes.Get(j), UdpSocketFactory::GetTypeId());
            sink->Bind(InetSocketAddress(Ipv4Address::GetAny(), kUdpPort));
            sink->SetRecvCallback(Callback<void, Ptr<Socket>>([this, j](Ptr<Socket> socket) { OnUdp(j, socket); }));

            m_senders[j] = Socket::CreateSocket(m_nodes.Get(j), UdpSocketFactory::GetTypeId());
            m_senders[j]->SetAllowBroadcast(true);
            m_senders[j]->Bind();

            if (m_p.transport == "tcp")
            {
                Ptr<Socket> listener = Socket::CreateSocket(m_nodes.Get(j), TcpSocketFactory::GetTypeId());
                listener->Bind(InetSocketAddress(Ipv4Address::GetAny(), kTcpPort));
                listener->Listen();
                listener->SetAcceptCallback(
                    MakeNullCallback<bool, Ptr<Socket>, const Address&>(),
                    Callback<void, Ptr<Socket>, const Address&>([this, j](Ptr<Socket> connection, const Address&) {
                        auto state = std::make_shared<TcpReceive>();
                        connection->SetRecvCallback(Callback<void, Ptr<Socket>>(
                            [this, j, state](Ptr<Socket> socket) { OnTcp(j, socket, *state); }));
                        connection->SetCloseCallbacks(
                            Callback<void, Ptr<Socket>>([](Ptr<Socket> socket) { socket->Close(); }),
                            MakeNullCallback<void, Ptr<Socket>>());
                    }));
            }
        }
    }

    // The devices i addresses in this slot: its neighbours, or `fanout` of them at random.
    std::vector<uint32_t> Targets(uint32_t i)
    {
        std::vector<uint32_t> targets;
        for (uint32_t j = 0; j < m_n; ++j)
        {
            if (m_neighbours[size_t(i) * m_n + j])
            {
                targets.push_back(j);
            }
        }
        if (m_p.fanout > 0 && m_p.fanout < targets.size())
        {
            for (uint32_t k = 0; k < m_p.fanout; ++k)  // partial Fisher-Yates shuffle
            {
                std::swap(targets[k], targets[m_pick->GetInteger(k, targets.size() - 1)]);
            }
            targets.resize(m_p.fanout);
        }
        return targets;
    }

    void CheckMessage(const char* what, uint32_t sender, uint32_t bytes) const
    {
        if (sender >= m_n || bytes == 0 || m_p.transport == "tcp" || m_p.fanout > 0)
        {
            throw std::invalid_argument(std::string(what) + ": a device index, bytes > 0, broadcast or unicast "
                                                            "to every neighbour");
        }
    }

    uint32_t QueueMessage(uint32_t sender, double atS, uint32_t bytes, const std::vector<uint32_t>& targets,
                          bool unicast)
    {
        const uint32_t number = m_messageBytes.size();
        m_messageBytes.push_back(std::max(bytes, kHeaderBytes));
        ScheduleMessage(kFirstMessageId + number, sender, std::max(atS, ns3::Simulator::Now().GetSeconds()), bytes,
                        targets, unicast);
        return number;
    }

    // One message's packets from `start` on: UDP datagrams paced datagramIntervalS apart (one broadcast, or a
    // unicast copy per target; `unicast` forces the copies), or one TCP connection per target (slots only).
    void ScheduleMessage(uint32_t id, uint32_t i, double start, uint32_t bytes, const std::vector<uint32_t>& targets,
                         bool unicast = false)
    {
        using namespace ns3;
        if (m_p.transport == "tcp")
        {
            for (uint32_t j : targets)
            {
                Simulator::Schedule(Until(start), [this, id, i, j]() { StartTcp(id, i, j); });
            }
            return;
        }
        const uint32_t perDatagram = std::max(m_p.datagramBytes, kHeaderBytes);
        const uint32_t count = (bytes + perDatagram - 1) / perDatagram;
        const bool broadcast = !unicast && m_p.transport == "broadcast" && (!m_p.accessPoint || i + 1 == m_n);
        const uint32_t copies = broadcast ? 1 : targets.size();
        uint32_t left = bytes;
        for (uint32_t k = 0; k < count; ++k)
        {
            const uint32_t size = std::max(std::min(left, perDatagram), kHeaderBytes);
            left -= std::min(left, perDatagram);
            for (uint32_t c = 0; c < copies; ++c)
            {
                const Ipv4Address to = broadcast ? Ipv4Address::GetBroadcast() : m_addresses.GetAddress(targets[c]);
                const double at = start + (double(k) * copies + c) * m_p.datagramIntervalS;
                if (id < kFirstMessageId)
                {
                    ++m_sendsLeft[i];
                }
                Simulator::Schedule(Until(at), [this, id, i, to, size]() { SendUdp(id, i, to, size); });
            }
        }
    }

    void WakeAll()
    {
        for (uint32_t i = 0; i < m_n; ++i)
        {
            Wake(i);
        }
    }

    void Wake(uint32_t i)
    {
        if (m_phys[i]->IsStateSleep())
        {
            m_phys[i]->ResumeFromSleep();
        }
    }

    // Sleep now if nothing is queued or on the air at i, else ask again kSleepRetryS later (until `untilS`).
    void TrySleep(uint32_t i, double untilS)
    {
        using namespace ns3;
        const double now = Simulator::Now().GetSeconds();
        if (now + kSleepRetryS >= untilS || m_phys[i]->IsStateSleep())
        {
            return;
        }
        if (m_phys[i]->IsStateTx() || m_phys[i]->IsStateRx() || m_phys[i]->IsStateSwitching() || !m_queues[i]->IsEmpty())
        {
            Simulator::Schedule(Seconds(kSleepRetryS), [this, i, untilS]() { TrySleep(i, untilS); });
            return;
        }
        m_phys[i]->SetSleepMode();
    }

    // RunSlot with radioSleep: i sleeps until the slot ends once its own datagrams are handed down and it holds
    // every message addressed to it.
    void MaybeSleepAfterSlot(uint32_t i)
    {
        if (m_p.radioSleep && m_slot != kNoSlot && m_sendsLeft[i] == 0 && m_waitingFor[i] == 0)
        {
            TrySleep(i, m_slotStartS + m_p.slotPeriodS);
        }
    }

    void CreditMessage(uint32_t id, uint32_t sender, uint32_t receiver, double bytes)
    {
        const uint32_t number = id - kFirstMessageId;
        if (number >= m_messageBytes.size())
        {
            return;
        }
        const uint64_t key = uint64_t(number) * m_n + receiver;
        double& got = m_messageCredit[key];
        if (got < 0)
        {
            return;  // already complete
        }
        got += bytes;
        if (got >= m_messageBytes[number])
        {
            got = -1.0;
            SlotRecord arrival(m_p.arrivalFields, std::vector<uint32_t>(m_p.arrivalFields.size(), 1));
            *arrival.Field("message", 1) = double(number);
            *arrival.Field("receiver", 1) = double(receiver);
            *arrival.Field("arrival_s", 1) = ns3::Simulator::Now().GetSeconds();
            m_arrivals.insert(m_arrivals.end(), arrival.values.begin(), arrival.values.end());
            if (m_stopAtArrival)
            {
                ns3::Simulator::Stop();  // after this event: Advance returns at the arrival's time
            }
        }
    }

    void SendUdp(uint32_t slot, uint32_t sender, ns3::Ipv4Address to, uint32_t size)
    {
        if (slot != m_slot && slot != kProbeSlot && slot < kFirstMessageId)
        {
            return;  // paced past the end of its slot: never sent
        }
        std::vector<uint8_t> buffer(size, 0);
        MessageTag tag{slot, sender};
        std::memcpy(buffer.data(), &tag, sizeof(tag));
        m_senders[sender]->SendTo(ns3::Create<ns3::Packet>(buffer.data(), size), 0,
                                  ns3::InetSocketAddress(to, kUdpPort));
        if (slot == m_slot && m_p.radioSleep && --m_sendsLeft[sender] == 0)
        {
            MaybeSleepAfterSlot(sender);  // its last datagram is queued: it sleeps once the queue is empty
        }
    }

    void Credit(uint32_t sender, uint32_t receiver, double bytes)
    {
        const size_t pair = size_t(sender) * m_n + receiver;
        m_rxBytes[pair] += bytes;
        if (m_done[pair] < 0 && m_rxBytes[pair] >= std::max(m_payloads[sender], kHeaderBytes))
        {
            m_done[pair] = ns3::Simulator::Now().GetSeconds() - m_slotStartS;
            if (m_intended[pair] && --m_open == 0 && m_done[pair] <= m_p.deadlineS)
            {
                MarkClockEnd();  // the last addressed message: the exchange's clock stops here
            }
            if (m_p.radioSleep && m_neighbours[pair] && --m_waitingFor[receiver] == 0)
            {
                MaybeSleepAfterSlot(receiver);
            }
        }
    }

    void OnUdp(uint32_t receiver, ns3::Ptr<ns3::Socket> socket)
    {
        while (ns3::Ptr<ns3::Packet> packet = socket->Recv())
        {
            MessageTag tag;
            packet->CopyData(reinterpret_cast<uint8_t*>(&tag), sizeof(tag));
            if (tag.id == kJunkId || tag.sender >= m_n || tag.sender == receiver)
            {
                continue;
            }
            if (tag.id == kProbeSlot)
            {
                m_probeCounts[size_t(tag.sender) * m_n + receiver] += 1.0;
            }
            else if (tag.id == m_slot)
            {
                Credit(tag.sender, receiver, packet->GetSize());
            }
            else if (tag.id >= kFirstMessageId && tag.id != kNoSlot && tag.id != kProbeSlot)
            {
                CreditMessage(tag.id, tag.sender, receiver, packet->GetSize());
            }
        }
    }

    void OnTcp(uint32_t receiver, ns3::Ptr<ns3::Socket> socket, TcpReceive& state)
    {
        while (ns3::Ptr<ns3::Packet> packet = socket->Recv())
        {
            const uint32_t size = packet->GetSize();
            if (state.headerBytes < kHeaderBytes)
            {
                std::vector<uint8_t> data(size);
                packet->CopyData(data.data(), size);
                const uint32_t take = std::min(kHeaderBytes - state.headerBytes, size);
                std::memcpy(state.header + state.headerBytes, data.data(), take);
                state.headerBytes += take;
                if (state.headerBytes == kHeaderBytes)
                {
                    std::memcpy(&state.tag, state.header, kHeaderBytes);
                }
            }
            state.total += size;
            if (state.headerBytes == kHeaderBytes && state.tag.id == m_slot && state.tag.sender < m_n &&
                state.tag.sender != receiver)
            {
                Credit(state.tag.sender, receiver, double(state.total - state.credited));
                state.credited = state.total;
            }
        }
    }

    void StartTcp(uint32_t slot, uint32_t sender, uint32_t receiver)
    {
        using namespace ns3;
        if (slot != m_slot)
        {
            return;
        }
        auto flow = std::make_shared<TcpFlow>();
        flow->tag = MessageTag{slot, sender};
        flow->left = std::max(m_payloads[sender], kHeaderBytes);
        flow->socket = Socket::CreateSocket(m_nodes.Get(sender), TcpSocketFactory::GetTypeId());
        flow->socket->SetAttribute("SegmentSize", UintegerValue(m_p.datagramBytes));
        flow->socket->Bind();
        TcpFlow* raw = flow.get();
        flow->socket->SetConnectCallback(Callback<void, Ptr<Socket>>([this, raw](Ptr<Socket>) { Pump(*raw); }),
                                         MakeNullCallback<void, Ptr<Socket>>());
        flow->socket->SetSendCallback(
            Callback<void, Ptr<Socket>, uint32_t>([this, raw](Ptr<Socket>, uint32_t) { Pump(*raw); }));
        flow->socket->Connect(InetSocketAddress(m_addresses.GetAddress(receiver), kTcpPort));
        m_tcpFlows.push_back(flow);
    }

    // Write as much of the message as the socket's send buffer takes.
    void Pump(TcpFlow& flow)
    {
        const uint32_t chunk = std::max(m_p.datagramBytes, kHeaderBytes);
        while (!flow.stopped && flow.left > 0)
        {
            const uint32_t room = flow.socket->GetTxAvailable();
            const uint32_t size = std::min({flow.left, room, chunk});
            if (size == 0 || (!flow.started && size < kHeaderBytes))
            {
                return;
            }
            std::vector<uint8_t> buffer(size, 0);
            if (!flow.started)
            {
                std::memcpy(buffer.data(), &flow.tag, sizeof(flow.tag));
                flow.started = true;
            }
            if (flow.socket->Send(ns3::Create<ns3::Packet>(buffer.data(), size)) < 0)
            {
                return;
            }
            flow.left -= size;
        }
    }

    // At the deadline senders stop writing and close (what is already in the send buffer still drains).
    void StopTcpWriters()
    {
        for (auto& flow : m_tcpFlows)
        {
            Release(*flow);
            flow->socket->Close();
        }
        m_tcpFlows.clear();
    }

    static void Release(TcpFlow& flow)
    {
        using namespace ns3;
        flow.stopped = true;
        flow.socket->SetConnectCallback(MakeNullCallback<void, Ptr<Socket>>(), MakeNullCallback<void, Ptr<Socket>>());
        flow.socket->SetSendCallback(MakeNullCallback<void, Ptr<Socket>, uint32_t>());
    }

    NetworkParams m_p;
    uint32_t m_n;
    bool m_alive = false;
    ns3::NodeContainer m_nodes;
    ns3::Ipv4InterfaceContainer m_addresses;
    std::vector<ns3::Ptr<ns3::Socket>> m_senders;
    std::vector<std::shared_ptr<TcpFlow>> m_tcpFlows;
    ns3::Ptr<ns3::UniformRandomVariable> m_jitter;
    ns3::Ptr<ns3::UniformRandomVariable> m_pick;
    std::vector<double> m_probeCounts;
    std::vector<uint8_t> m_neighbours;
    double m_firstSlotS = kProbeStartS;
    // The slot being simulated.
    uint32_t m_slot = kNoSlot;
    ns3::NodeContainer m_jammerNode;
    ns3::Ptr<ns3::Socket> m_jammerSocket;
    ns3::Ptr<ns3::WifiRadioEnergyModel> m_jammerRadio;
    uint64_t m_junkFrames = 0;
    double m_slotStartS = 0.0;
    std::vector<uint32_t> m_payloads;
    uint64_t m_lastSlotEvents = 0;
    std::vector<double> m_rxBytes;
    std::vector<double> m_done;
    std::vector<uint32_t> m_sendsLeft;   // radioSleep: datagrams each device has still to hand down in the slot
    std::vector<uint32_t> m_waitingFor;  // radioSleep: messages addressed to each device not yet complete
    // Messages (SendMessage): bytes of each, bytes each receiver holds (-1: complete), arrivals not yet reported.
    std::vector<uint32_t> m_messageBytes;
    std::unordered_map<uint64_t, double> m_messageCredit;
    std::vector<double> m_arrivals;
    bool m_stopAtArrival = false;
    std::vector<ns3::Ptr<ns3::WifiPhy>> m_phys;
    std::vector<ns3::Ptr<ns3::WifiMacQueue>> m_queues;

    uint64_t m_frames = 0;
    uint64_t m_airBytes = 0;
    int64_t m_slotRetries = 0;  // MAC retransmissions in the current slot
    // Radio energy: seconds per device and state up to each radio's last state change, and that change's time.
    std::vector<ns3::Ptr<ns3::energy::EnergySource>> m_sources;
    std::vector<ns3::Ptr<ns3::WifiRadioEnergyModel>> m_radios;
    std::vector<double> m_stateS;
    std::vector<double> m_changedS;
    std::vector<double> m_retries;  // per device: MAC retransmissions so far (Retries)
    // RunSlot: addressed pairs not yet complete, and the radios' seconds at the slot start and clock end.
    std::vector<uint8_t> m_intended;
    size_t m_open = 0;
    std::vector<double> m_secondsAtStart;
    std::vector<double> m_secondsAtEnd;
    double m_clockEndS = 0.0;
};

} // namespace nsdml
